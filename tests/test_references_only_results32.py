"""A references-only evaluation (verilog's `references_only=true`) reads no model: evaluate.py resolves none
(a .gguf default would be converted) unless a kept earlier task names one, its results say they are the
references', and a task finished before with other settings is replaced with a warning naming the change,
its record and per-item file kept aside in tasks/.stale/."""

import json
import logging
import shutil

import pytest
from conftest import CONF, ROOT
from omegaconf import OmegaConf, open_dict

from chipadapt.eval import run as eval_run

TARGET = "test_references_only_results32.VerilogLike"
SHIPPED = ROOT / "src/chipadapt/resources/rtl_selfcheck/tasks.jsonl"
FLOAT32 = ("float32", "sdpa")


class VerilogLike:
    """verilog's two ways: a model's designs (needs_model) or the reference solutions (references_only)."""

    def __init__(self, name: str, references_only: bool = False, passed: int = 1):
        self.name, self.references_only, self.passed = name, references_only, passed
        self.items = None

    @property
    def needs_model(self) -> bool:
        return not self.references_only

    def run(self, model, tokenizer) -> dict:
        self.items = [{"id": str(i), "scores": {"pass@1": float(i < self.passed)}} for i in range(2)]
        return {"pass@1": self.passed / 2, "pass@1_n": 2}


class _Loaded:
    model = tokenizer = None


def tasks(**settings) -> OmegaConf:
    return OmegaConf.create({name: {"_target_": TARGET, "name": name, **extra} for name, extra in settings.items()})


@pytest.fixture
def evaluate(tmp_path, monkeypatch):
    """evaluate.py's job in-process; every resolution of the model is counted (none is loaded)."""
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.models import hf_folder

    resolved = []
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: _Loaded())
    monkeypatch.setattr(hf_folder, "resolve_model_folder", lambda cfg: resolved.append(cfg.path) or model)
    out = tmp_path / "run"

    def job(**settings):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"paths.output_dir={out}"])
        with open_dict(cfg):
            cfg.eval = tasks(**settings)
        return eval_run.run(cfg)

    return job, out, resolved


def test_a_references_only_run_resolves_no_model(evaluate):
    job, out, resolved = evaluate
    results = job(verilog={"references_only": True})
    assert resolved == []  # the default model (a .gguf file) was converted for nothing
    assert results["verilog"]["references_only"] is True
    assert json.loads((out / "results.json").read_text())["verilog"]["references_only"] is True
    # A rerun naming another task keeps it without resolving the model either: its record names none.
    job(other={"references_only": True})
    assert resolved == [] and set(json.loads((out / "results.json").read_text())) == {"verilog", "other"}


def test_a_kept_task_of_the_model_still_resolves_it(evaluate):
    job, out, resolved = evaluate
    job(verilog={})
    assert len(resolved) >= 1 and "references_only" not in json.loads((out / "results.json").read_text())["verilog"]
    before = len(resolved)
    job(other={"references_only": True})  # verilog, the model's, is compared with the model and kept
    assert len(resolved) > before
    assert set(json.loads((out / "results.json").read_text())) == {"verilog", "other"}


def test_results_of_other_settings_replace_a_finished_task_with_a_warning_and_keep_it_aside(
    tmp_path, caplog, monkeypatch
):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    run = tmp_path / "run"
    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: _Loaded())
    eval_run.evaluate_folder(
        model, tasks(verilog={"references_only": False, "passed": 0}), "cpu", run, *FLOAT32, resume=True
    )
    items, record = (run / "verilog_items.jsonl").read_bytes(), (run / "tasks" / "verilog.json").read_bytes()
    with caplog.at_level(logging.INFO, logger="chipadapt.eval"):
        results = eval_run.evaluate_folder(
            lambda: pytest.fail("a references-only run resolved the model"),
            tasks(verilog={"references_only": True, "passed": 2}),
            "cpu",
            run,
            *FLOAT32,
            resume=True,
        )
    assert results["verilog"]["pass@1"] == 1.0 and results["verilog"]["references_only"] is True
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "chipadapt.eval.run"]
    assert len(warned) == 1, caplog.text
    message = warned[0].getMessage()
    assert (
        "verilog" in message
        and "references_only False -> True" in message
        and "model the evaluated model -> none" in message
    )
    assert "running it again" in message and "tasks/.stale" in message
    assert "finished earlier with other settings" not in caplog.text  # the INFO line is not said as well
    (aside,) = (run / "tasks" / ".stale").iterdir()
    assert aside.name.startswith("verilog-")
    assert (aside / "verilog_items.jsonl").read_bytes() == items and (aside / "verilog.json").read_bytes() == record
    assert (run / "verilog_items.jsonl").read_bytes() != items  # the new results are the task's now
    # The folder's readers do not take the kept files for the run's: tasks/*.json and *_items.jsonl only.
    from chipadapt.eval.finished_tasks import recorded_tasks

    assert recorded_tasks(run) == {"verilog"}


def test_the_same_settings_rerun_replaces_without_a_warning_or_a_copy(tmp_path, caplog):
    run = tmp_path / "run"
    eval_run.evaluate_folder(None, tasks(verilog={"references_only": True}), "cpu", run, *FLOAT32, resume=True)
    with caplog.at_level(logging.INFO, logger="chipadapt.eval"):
        eval_run.evaluate_folder(None, tasks(verilog={"references_only": True}), "cpu", run, *FLOAT32, resume=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not (run / "tasks" / ".stale").exists()


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog")
def test_the_verilog_task_itself_says_references_only(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                "eval=[verilog]",
                "verilog_shape@eval.verilog.shape=self_checking",
                f"eval.verilog.path={SHIPPED}",
                "eval.verilog.references_only=true",
                "eval.verilog.limit=1",
            ],
        )
    results = eval_run.evaluate_folder(
        lambda: pytest.fail("resolved a model"), cfg.eval, "cpu", tmp_path, *FLOAT32, resume=True
    )
    assert results["verilog"]["references_only"] is True
    assert json.loads((tmp_path / "tasks" / "verilog.json").read_text())["results"]["references_only"] is True
