"""A `${` in a job's config (a chat template, of any stage) reaches each logger as written: the CSV and
TensorBoard loggers write hparams.yaml through OmegaConf, which read it as an interpolation (the write
failed with a GrammarParseError, the job with it), so they write it escaped and it reads back as the
text; W&B takes the text as it is. Before, merge.py escaped the config it sent to every logger, so W&B
recorded the escaped text, and the other stages sent `${` unescaped to the CSV and TensorBoard loggers."""

import pytest
from helpers.wandb_records import read_run
from lightning.pytorch.core.saving import load_hparams_from_yaml
from omegaconf import OmegaConf

from chipadapt.loggers.job import JobLoggers

TEMPLATE = "{% for m in messages %}${ {{ m['content'] }} } \\${x} \\\\${y}{% endfor %}"


@pytest.mark.parametrize("stage", ["sft", "merge"])
def test_a_config_holding_an_interpolation_sign_is_logged_as_written(tmp_path, monkeypatch, stage):
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = {
        "csv": {"_target_": "chipadapt.loggers.csv.AppendingCSVLogger", "save_dir": str(tmp_path / "csv")},
        "tensorboard": {
            "_target_": "chipadapt.loggers.tensorboard.RunTensorBoardLogger",
            "save_dir": str(tmp_path / "tb"),
        },
        "wandb": {"_target_": "chipadapt.loggers.wandb.JobWandbLogger", "save_dir": str(tmp_path), "offline": True},
    }
    for node in (loggers["csv"], loggers["tensorboard"]):
        node.update(name="", version="")
    config = {"stage": {"name": stage}, "data": {"chat_template": TEMPLATE, "notes": ["${a}", 1]}}
    with JobLoggers(OmegaConf.create(loggers), config) as job:
        job.log_metrics({"result": 1.0})
    for folder in ("csv", "tb"):
        back = load_hparams_from_yaml(str(tmp_path / folder / "hparams.yaml"))
        assert back["data"]["chat_template"] == TEMPLATE and list(back["data"]["notes"]) == ["${a}", 1]
    (run,) = [read_run(p) for p in (tmp_path / "wandb").glob("offline-run-*")]
    assert run["config"]["data"] == {"chat_template": TEMPLATE, "notes": ["${a}", 1]}
    assert config["data"]["chat_template"] == TEMPLATE  # the job's own config is left as it is
