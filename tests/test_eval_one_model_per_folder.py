"""evaluate.py's folder holds one model's evaluation: another model there is refused unless overwrite=true,
which removes the earlier evaluation's per-item files and task records; the same model goes on."""

import json
from pathlib import Path

import pytest
from conftest import CONF
from helpers import eval_tasks
from omegaconf import OmegaConf, open_dict

from chipadapt.errors import ChipadaptError
from chipadapt.eval import run as eval_run

TARGET = "helpers.eval_tasks.CountingTask"


class _Loaded:
    model = tokenizer = None


@pytest.fixture
def evaluate(tmp_path, monkeypatch):
    """evaluate.py's job in-process on fake model folders (a model is not loaded: the tasks count their runs)."""
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.models import hf_folder

    eval_tasks.RUNS.clear()
    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: _Loaded())
    monkeypatch.setattr(hf_folder, "resolve_model_folder", lambda model: Path(model.path))
    out = tmp_path / "run"

    def job(model: Path, names: list[str], *overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"model.path={model}", f"paths.output_dir={out}", *overrides])
        with open_dict(cfg):
            tasks = {name: {"_target_": TARGET, "name": name, "needs_model": True} for name in names}
            cfg.eval = OmegaConf.create(tasks)
        return eval_run.run(cfg)

    return job, out


def model_folder(root: Path, name: str, weights: bytes) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')  # what evaluate checks before loading
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_another_model_in_an_evaluated_folder_is_refused_and_overwrite_leaves_its_evaluation_only(tmp_path, evaluate):
    job, out = evaluate
    a = model_folder(tmp_path, "a", b"weights of a")
    b = model_folder(tmp_path, "b", b"weights of b")
    job(a, ["perplexity", "mcq"])
    before = {name: (out / name).read_bytes() for name in ("results.json", "manifest.json", "mcq_items.jsonl")}
    with pytest.raises(ChipadaptError, match=r"holds an evaluation of another model.*model\.path.*overwrite=true"):
        job(b, ["perplexity"])
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing of a's evaluation lost
    assert eval_tasks.RUNS == ["perplexity", "mcq"]
    # The same path with other files is another model too, and so is a's loaded in another dtype.
    (a / "model.safetensors").write_bytes(b"retrained weights of a")
    with pytest.raises(ChipadaptError, match="model files"):
        job(a, ["perplexity"])
    with pytest.raises(ChipadaptError, match="model.dtype"):
        job(b, ["perplexity"], "model.dtype=bfloat16", "overwrite=false")
    # overwrite=true: b's evaluation alone; a's per-item file and task record of mcq are gone.
    job(b, ["perplexity"], "overwrite=true")
    assert sorted(p.name for p in out.glob("*_items.jsonl")) == ["perplexity_items.jsonl"]
    assert sorted(p.name for p in (out / "tasks").iterdir()) == ["perplexity.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["model"]["path"] == str(b) and list(manifest["results"]) == ["perplexity"]
    assert eval_tasks.RUNS == ["perplexity", "mcq", "perplexity"]


def test_more_tasks_of_the_same_model_go_on_in_its_folder(tmp_path, evaluate):
    job, out = evaluate
    a = model_folder(tmp_path, "a", b"weights of a")
    job(a, ["perplexity"])
    results = job(a, ["perplexity", "mcq"])
    assert eval_tasks.RUNS == ["perplexity", "mcq"]  # perplexity kept, mcq added
    assert set(results) == {"perplexity", "mcq"} and (out / "mcq_items.jsonl").is_file()
    # overwrite=true on the same model (a requeued command line): the finished tasks are kept, not redone.
    misses = out / "retrieval_misses.md"
    misses.write_text("# Retrieval misses: a\n")
    assert set(job(a, ["perplexity", "mcq"], "overwrite=true")) == {"perplexity", "mcq"}
    assert eval_tasks.RUNS == ["perplexity", "mcq"] and misses.is_file()
    # Another model with overwrite=true: the earlier evaluation's files go, its retrieval misses too.
    job(model_folder(tmp_path, "b", b"weights of b"), ["perplexity"], "overwrite=true")
    assert not misses.exists() and not (out / "mcq_items.jsonl").exists()


def test_overwrite_leaves_a_file_of_another_origin_under_a_task_record_name(tmp_path, evaluate):
    job, out = evaluate
    a = model_folder(tmp_path, "a", b"weights of a")
    b = model_folder(tmp_path, "b", b"weights of b")
    job(a, ["mcq"])
    notes = out / "tasks" / "notes.json"
    notes.write_text('{"mine": true}\n')  # not a task record: not the evaluation's to remove
    job(b, ["perplexity"], "overwrite=true")
    assert notes.read_text() == '{"mine": true}\n' and not (out / "mcq_items.jsonl").exists()


def test_overwrite_with_another_model_starts_a_new_wandb_run(tmp_path, evaluate, monkeypatch):
    """Before, the folder's W&B run was continued: b's results logged into a's run, over its history."""
    from chipadapt.loggers import job as job_loggers

    continued = []

    class Recorder(job_loggers.JobLoggers):
        def __init__(self, logger_cfg, config):
            continued.append(logger_cfg.wandb.continue_run)
            super().__init__(OmegaConf.create({}), config)

    monkeypatch.setattr(job_loggers, "JobLoggers", Recorder)
    job, _ = evaluate
    a = model_folder(tmp_path, "a", b"weights of a")
    b = model_folder(tmp_path, "b", b"weights of b")
    job(a, ["perplexity"], "logger=wandb")
    job(a, ["mcq"], "logger=wandb", "overwrite=true")  # the same model: its evaluation and its W&B run go on
    job(b, ["perplexity"], "logger=wandb", "overwrite=true")
    assert continued == [True, True, False]
