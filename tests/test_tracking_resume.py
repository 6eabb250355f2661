"""Run tracking across resumes and reruns: one W&B run per run folder (a resume or a rerun continues
it, resume=false starts a new one), no step logged twice in metrics.csv or TensorBoard after a kill,
the model tagged by what was used, bad logger settings as one line before any work, and the job's
name and command taken from what the launcher recorded (submitit workers have another argv)."""

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, TINY_FAST, compose
from helpers.wandb_records import read_run

from chipadapt.errors import ChipadaptError

# The run killed at step 5 saved its last checkpoint at step 3 (every 3 steps) and had logged steps 3-4.
KILLED = [
    *TINY_FAST,
    "stage.validate_before=false",
    "trainer.max_steps=8",
    "callbacks.checkpoint.every_n_train_steps=3",
    "trainer.val_check_interval=8",  # micro-batches: a validation every 2 steps, rows of another kind
    "data.val_max_bytes=128",
    "logger=tensorboard",  # with metrics.csv, and W&B beside them
    "+logger.wandb._target_=chipadapt.loggers.wandb.JobWandbLogger",
    "+logger.wandb.save_dir=${paths.output_dir}",
    "+logger.wandb.offline=true",
    "+logger.wandb.continue_run=${resume}",  # as conf/logger/wandb.yaml has it
]


def run_ids(folder: Path) -> list[str]:
    """The W&B run id of each W&B process that logged in `folder`, oldest first (`run-<id>.wandb`)."""
    return [p.stem.removeprefix("run-") for p in sorted((folder / "wandb").glob("offline-run-*/run-*.wandb"))]


def csv_rows(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def logged_twice(rows: list[dict]) -> list[tuple[str, str]]:
    counts = Counter(
        (row["step"], key) for row in rows for key, value in row.items() if value and key not in ("step", "epoch")
    )
    return sorted(key for key, n in counts.items() if n > 1)


def tensorboard_steps(folder: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()  # as TensorBoard reads the folder: a purge marker hides the events it replaces
    return [event.step for event in events.Scalars(tag)]


def test_a_killed_run_resumed_logs_each_step_once_in_one_wandb_run_and_resume_false_starts_over(tmp_path, monkeypatch):
    from chipadapt.pipeline import train

    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    killed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *KILLED,
            "+callbacks.kill._target_=helpers.kill.KillAtStep",
            "+callbacks.kill.step=5",
            f"hydra.run.dir={run}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests"), "WANDB_MODE": "offline"},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert any(int(row["step"]) >= 3 for row in csv_rows(run))  # logged after the checkpoint at step 3

    # Online (simulated: W&B still writes offline here), the rerun continues the folder's W&B run.
    as_online(monkeypatch)
    train(compose(KILLED, run))  # the rerun in the same folder: resumes from step 3
    rows = csv_rows(run)
    assert logged_twice(rows) == []
    assert sorted(int(r["step"]) for r in rows if r["train/loss"]) == list(range(8))
    assert tensorboard_steps(run, "train/loss") == list(range(8))
    assert tensorboard_steps(run, "val/domain/bpb") == [1, 3, 5, 7]
    first = run_ids(run)
    assert len(first) == 2 and len(set(first)) == 1  # two W&B processes, one W&B run
    (resumed,) = [read_run(p) for p in sorted((run / "wandb").glob("offline-run-*"))[-1:]]
    assert resumed["run"].run_id == first[0] and resumed["run"].resume

    # Started over in the same folder: its curves start over, in a new W&B run.
    train(compose([*KILLED, "resume=false", "overwrite=true", "trainer.max_steps=4"], run))
    rows = csv_rows(run)
    assert sorted(int(r["step"]) for r in rows if r["train/loss"]) == [0, 1, 2, 3] and logged_twice(rows) == []
    assert tensorboard_steps(run, "train/loss") == [0, 1, 2, 3]
    ids = run_ids(run)
    assert len(ids) == 3 and ids[-1] != first[0]
    assert (run / "wandb" / "chipadapt-run-id").read_text().strip() == ids[-1]  # the next resume continues it


def as_online(monkeypatch) -> None:
    """What the id choice does online, where W&B resumes a run; the runs themselves stay offline."""
    import chipadapt.loggers.sweep_run as sweep_run
    import chipadapt.loggers.wandb as wandb_logger

    monkeypatch.setattr(wandb_logger, "runs_offline", lambda offline: False)
    monkeypatch.setattr(sweep_run, "runs_offline", lambda offline: False)


def test_offline_each_attempt_is_a_wandb_run_of_its_own(tmp_path, monkeypatch):
    """Offline, W&B ignores resume, and syncing a second folder with the same id replaces the first
    one's history: an attempt's history must not be lost to the next."""
    from omegaconf import OmegaConf

    from chipadapt.loggers.job import JobLoggers

    monkeypatch.setenv("WANDB_SILENT", "true")
    node = {"_target_": "chipadapt.loggers.wandb.JobWandbLogger", "save_dir": str(tmp_path), "offline": True}
    for attempt in range(2):
        with JobLoggers(OmegaConf.create({"wandb": node}), {"attempt": attempt}) as loggers:
            loggers.log_metrics({"result": float(attempt)})
    ids = run_ids(tmp_path)  # (in name order: two attempts in one second sort by id)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert (tmp_path / "wandb" / "chipadapt-run-id").read_text().strip() in ids


def test_metrics_csv_drops_the_rows_from_the_resumed_step_on_and_keeps_all_without_a_start(tmp_path):
    from chipadapt.loggers.csv import AppendingCSVLogger

    def logged(start):
        folder = tmp_path / str(start)
        folder.mkdir()
        rows = "".join(f"{s},{2 - s / 100}\r\n" for s in range(14))
        (folder / "metrics.csv").write_text("step,train/loss\r\n" + rows + "14,1.8")  # the last row cut by a kill
        logger = AppendingCSVLogger(save_dir=str(folder), name="", version="")
        if start is not None:
            logger.start_at(start)
        logger.log_metrics({"train/loss": 0.5, "val/loss": 0.7}, step=start or 0)
        logger.save()
        return [(int(r["step"]), r["val/loss"]) for r in csv_rows(folder)]

    assert logged(10) == [*((s, "") for s in range(10)), (10, "0.7")]
    assert logged(0) == [(0, "0.7")]  # started over: the earlier attempt's rows are gone, its header too
    assert len(logged(None)) == 16  # the logger used on its own appends, as before


def test_online_evaluate_merge_and_sweep_report_reruns_continue_the_folders_wandb_run(tmp_path, monkeypatch):
    from omegaconf import OmegaConf
    from PIL import Image

    from chipadapt.loggers.job import JobLoggers
    from chipadapt.loggers.sweep_run import log_sweep_report

    monkeypatch.setenv("WANDB_SILENT", "true")
    as_online(monkeypatch)
    node = {
        "_target_": "chipadapt.loggers.wandb.JobWandbLogger",
        "save_dir": str(tmp_path / "job"),
        "project": "chipadapt",
        "offline": True,
    }
    for attempt in range(2):  # evaluate.py and merge.py log through JobLoggers
        with JobLoggers(OmegaConf.create({"wandb": node}), {"attempt": attempt}) as loggers:
            loggers.log_metrics({"result": float(attempt)})
    ids = run_ids(tmp_path / "job")
    assert len(ids) == 2 and len(set(ids)) == 1
    with JobLoggers(OmegaConf.create({"wandb": {**node, "continue_run": False}}), {}):  # evaluate.py resume=false
        pass
    assert len(set(run_ids(tmp_path / "job"))) == 2

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    Image.new("RGB", (4, 4)).save(sweep / "sweep_report.png")
    for lam in (0.5, 0.6):  # a report that changed (the same one is not logged again: next test)
        log_sweep_report(OmegaConf.create({"wandb": node}), sweep, sweep / "sweep_report.png", [{"lam": lam}], {})
    ids = run_ids(sweep)
    assert len(ids) == 2 and len(set(ids)) == 1


def test_an_offline_no_op_sweep_rerun_adds_no_second_report_run(tmp_path, monkeypatch):
    """A merge sweep rerun whose jobs were all done added a duplicate `sweep_report` offline run."""
    from omegaconf import OmegaConf
    from PIL import Image

    from chipadapt.loggers.sweep_run import log_sweep_report

    monkeypatch.setenv("WANDB_SILENT", "true")
    node = OmegaConf.create({"wandb": {"save_dir": str(tmp_path), "project": "chipadapt", "offline": True}})
    Image.new("RGB", (4, 4)).save(tmp_path / "sweep_report.png")
    for rows in ([{"lam": 0.5}], [{"lam": 0.5}]):
        log_sweep_report(node, tmp_path, tmp_path / "sweep_report.png", rows, {"lam": 0.5})
    assert len(run_ids(tmp_path)) == 1
    log_sweep_report(node, tmp_path, tmp_path / "sweep_report.png", [{"lam": 0.7}], {"lam": 0.7})
    assert len(run_ids(tmp_path)) == 2  # another report: a run of its own, as offline attempts are


def test_a_folder_from_before_ids_were_recorded_continues_its_latest_wandb_run(tmp_path):
    from chipadapt.loggers.wandb import folder_run_id

    for folder, run_id in [
        ("offline-run-20261203_101010-older111", "older111"),
        ("run-20261204_101010-newer222-1", "newer222"),
    ]:
        (tmp_path / "wandb" / folder).mkdir(parents=True)
        (tmp_path / "wandb" / folder / f"run-{run_id}.wandb").write_bytes(b"")
    assert folder_run_id(tmp_path) == "newer222"
    assert folder_run_id(tmp_path) == "newer222"  # recorded now
    fresh = folder_run_id(tmp_path, new=True)
    assert fresh != "newer222" and folder_run_id(tmp_path) == fresh
    (tmp_path / "wandb" / "chipadapt-run-id").write_text("not/an id\n")  # damaged: a new id, never this
    assert folder_run_id(tmp_path) not in ("not/an id", fresh)


def compose_entry(config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)


@pytest.mark.parametrize(
    ("config_name", "overrides", "model_tag"),
    [
        ("train", ["model.path=/models/my-dapt-7b"], "my-dapt-7b"),
        ("train", ["model=tiny"], "tiny"),
        ("evaluate", ["model.path=/runs/dapt_lr1e-4/model/"], "dapt_lr1e-4"),  # a train run's output: the run
        ("merge", ["models.chip=/c", "models.instruct=/i"], None),  # no model key: tagged by the method only
    ],
)
def test_wandb_tags_name_the_model_used_not_the_default_group(tmp_path, config_name, overrides, model_tag):
    from hydra.utils import instantiate

    cfg = compose_entry(config_name, [*overrides, "logger=wandb", f"paths.output_dir={tmp_path}"])
    tags = instantiate(cfg.logger.wandb)._wandb_init["tags"]
    assert "smollm2_135m_instruct" not in tags
    assert model_tag is None or model_tag in tags
    if config_name == "merge":
        assert tags == ["chipalign"]


def test_a_single_word_is_one_wandb_tag(tmp_path):
    from hydra.utils import instantiate

    cfg = compose([*TINY_FAST, "logger=wandb", "logger.wandb.tags=abc"], tmp_path)
    assert instantiate(cfg.logger.wandb)._wandb_init["tags"] == ["abc", "tiny"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["logger=wandb", "logger.wandb.offline=maybe"], "logger.wandb.offline: 'maybe' is not true or false"),
        (
            ["logger=wandb", "logger.wandb.tags=[a,[b]]"],
            "logger.wandb.tags: ['a', ['b']] is not a tag or a list of tags",
        ),
        (["logger.csv=null"], "logger.csv=null leaves training no logger, and callbacks.lr_monitor logs to one"),
    ],
)
def test_bad_logger_settings_stop_training_before_any_work(tmp_path, overrides, message):
    from chipadapt.pipeline import train

    with pytest.raises(ChipadaptError, match=re.escape(message)):
        train(compose([*TINY_FAST, "trainer.max_steps=1", *overrides], tmp_path))
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "checkpoints").exists()


def test_no_logger_at_all_trains_when_the_lr_monitor_is_off_too(tmp_path):
    from chipadapt.pipeline import train

    overrides = [*TINY_FAST, "trainer.max_steps=1", "stage.validate_before=false", "data.val_max_bytes=128"]
    train(compose([*overrides, "logger.csv=null", "callbacks.lr_monitor=null"], tmp_path))
    assert (tmp_path / "model").is_dir() and not (tmp_path / "metrics.csv").exists()


def test_wandb_online_without_an_api_key_is_one_line_saying_how(tmp_path):
    # A fresh process: W&B, not chipadapt, is what might print its own traceback or lines here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "netrc"), WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"))
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *TINY_FAST,
            "logger=wandb",
            "logger.wandb.offline=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("chipadapt: error:")]
    assert line.startswith("chipadapt: error: logger.wandb.offline=false: no W&B API key is configured")
    assert "WANDB_API_KEY" in line and "wandb login" in line and "logger.wandb.offline=true" in line
    assert not (tmp_path / "run" / "manifest.json").exists()  # refused before any work


@pytest.fixture
def submitit_worker(tmp_path, monkeypatch):
    """Hydra's state in a job of `train.py -m optim.lr=1e-4,5e-6 model=tiny hydra/launcher=submitit_local`,
    as submitit's worker process has it: argv is `_submit.py`, the job's config comes pickled."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    sweep = tmp_path / "multirun" / "2026-12-03" / "10-00-00"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=["model=tiny", "optim.lr=1e-4"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(sweep)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.runtime.output_dir = str(sweep / "0")
        cfg.hydra.job.config_name = "train"
    monkeypatch.setattr(
        sys, "argv", ["/usr/lib/python3/site-packages/submitit/core/_submit.py", str(sweep / ".submitit/%j")]
    )
    HydraConfig.instance().set_config(cfg)
    yield sweep
    HydraConfig.instance().cfg = None


def test_under_a_submitit_launcher_the_name_and_command_are_the_users(submitit_worker, monkeypatch, tmp_path):
    from chipadapt.io.command_line import COMMAND_ENV, record_command
    from chipadapt.loggers.identity import job_identity
    from chipadapt.manifest import RunManifest

    # What train.py recorded in the launching process, inherited by the worker through its environment.
    monkeypatch.delenv(COMMAND_ENV, raising=False)
    with monkeypatch.context() as launching:
        launching.setattr(sys, "argv", ["/repo/train.py", "-m", "optim.lr=1e-4,5e-6", "model=tiny"])
        record_command(sys.argv)
    assert json.loads(os.environ[COMMAND_ENV]) == ["train.py", "-m", "optim.lr=1e-4,5e-6", "model=tiny"]
    assert job_identity().name == "optim.lr=1e-4"  # not `model=tiny` too: every job has it
    manifest = RunManifest(tmp_path / "out", compose(["model=tiny"], tmp_path / "out"))
    assert manifest.data["command"] == "train.py -m optim.lr=1e-4,5e-6 model=tiny"

    # A launcher that passed no environment on: the overrides the sweep recorded in multirun.yaml.
    monkeypatch.delenv(COMMAND_ENV)
    submitit_worker.mkdir(parents=True)
    (submitit_worker / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: ['optim.lr=1e-4,5e-6', 'model=tiny']\n"
    )
    assert job_identity().name == "optim.lr=1e-4"


def test_tensorboard_hparams_file_is_this_jobs_not_an_earlier_runs(tmp_path):
    """A run started over in a folder must not keep the first run's hparams.yaml."""
    import yaml

    from chipadapt.loggers.tensorboard import RunTensorBoardLogger

    folder = tmp_path / "tensorboard"
    folder.mkdir()
    (folder / "hparams.yaml").write_text("lr: 0.5\nmax_steps: 8\n")
    logger = RunTensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="")
    logger.log_hyperparams({"lr": 0.001, "max_steps": 4})
    logger.save()
    assert yaml.safe_load((folder / "hparams.yaml").read_text()) == {"lr": 0.001, "max_steps": 4}
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary left
