"""evaluate.py in a folder that finished some tasks before: those are kept, the others run."""

import pytest
from helpers import eval_tasks
from omegaconf import OmegaConf

from chipadapt.eval import run as eval_run

TARGET = "helpers.eval_tasks.CountingTask"


# evaluate_folder's dtype and attn_implementation: evaluate.py passes model.dtype and model.attn_implementation.
FLOAT32 = ("float32", "sdpa")


def tasks(**settings) -> OmegaConf:
    return OmegaConf.create({name: {"_target_": TARGET, "name": name, **extra} for name, extra in settings.items()})


@pytest.fixture
def runs(monkeypatch):
    eval_tasks.RUNS.clear()
    loads = []
    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: loads.append(args) or _Loaded())
    return eval_tasks.RUNS, loads


class _Loaded:
    model = tokenizer = None


def test_a_rerun_keeps_finished_tasks_and_runs_the_one_a_kill_stopped(tmp_path, runs):
    done, loads = runs
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(RuntimeError, match="ifeval: stopped"):
        eval_run.evaluate_folder(
            model, tasks(mcq={"needs_model": True}, ifeval={"fail": True}), "cpu", tmp_path, *FLOAT32, resume=True
        )
    assert done == ["mcq"] and (tmp_path / "tasks" / "mcq.json").is_file()
    results = eval_run.evaluate_folder(
        model, tasks(mcq={"needs_model": True}, ifeval={}), "cpu", tmp_path, *FLOAT32, resume=True
    )
    assert done == ["mcq", "ifeval"] and results["mcq"]["acc_n"] == 2 and results["ifeval"]["acc"] == 1.0
    assert len(loads) == 1  # the second run needed no model: its one model task was kept
    # Other settings, another model, a lost items file or resume=false: the task runs again.
    eval_run.evaluate_folder(
        model, tasks(mcq={"needs_model": True, "limit": 3}), "cpu", tmp_path, *FLOAT32, resume=True
    )
    assert done[-1] == "mcq" and len(done) == 3
    (model / "model.safetensors").write_bytes(b"other weights")
    eval_run.evaluate_folder(
        model, tasks(mcq={"needs_model": True, "limit": 3}), "cpu", tmp_path, *FLOAT32, resume=True
    )
    assert len(done) == 4
    eval_run.evaluate_folder(
        model, tasks(mcq={"needs_model": True, "limit": 3}), "cpu", tmp_path, "bfloat16", "sdpa", resume=True
    )
    assert len(done) == 5
    eval_run.evaluate_folder(model, tasks(ifeval={}), "cpu", tmp_path, *FLOAT32, resume=True)
    assert len(done) == 5  # a task without a model does not depend on how the model is loaded
    (tmp_path / "ifeval_items.jsonl").unlink()
    eval_run.evaluate_folder(model, tasks(ifeval={}), "cpu", tmp_path, *FLOAT32, resume=True)
    assert done[-1] == "ifeval" and len(done) == 6
    eval_run.evaluate_folder(model, tasks(ifeval={}), "cpu", tmp_path, *FLOAT32, resume=False)
    assert len(done) == 7
    (tmp_path / "tasks" / "ifeval.json").write_text("{half")  # a damaged record: run again, no error
    eval_run.evaluate_folder(model, tasks(ifeval={}), "cpu", tmp_path, *FLOAT32, resume=True)
    assert len(done) == 8


def test_data_a_task_reads_is_taken_by_identity_not_by_path(tmp_path, runs):
    done, _ = runs
    data = tmp_path / "data" / "questions.jsonl"
    data.parent.mkdir()
    data.write_text('{"question": "q1"}\n')
    run = tmp_path / "run"
    eval_run.evaluate_folder(None, tasks(mcq={"path": str(data)}), "cpu", run, *FLOAT32, resume=True)
    eval_run.evaluate_folder(None, tasks(mcq={"path": str(data)}), "cpu", run, *FLOAT32, resume=True)
    assert done == ["mcq"]
    data.write_text('{"question": "q2"}\n')  # the same path, rewritten: the task runs again
    eval_run.evaluate_folder(None, tasks(mcq={"path": str(data)}), "cpu", run, *FLOAT32, resume=True)
    assert done == ["mcq", "mcq"]
    # The same file under another name (a checkout moved elsewhere) is the same data.
    moved = tmp_path / "elsewhere.jsonl"
    data.rename(moved)
    eval_run.evaluate_folder(None, tasks(mcq={"path": str(moved)}), "cpu", run, *FLOAT32, resume=True)
    assert done == ["mcq", "mcq"]


def test_a_model_package_counts_by_its_installed_files(tmp_path, monkeypatch):
    """`encoders.<name>.package` names a Python package, not a path: an upgrade or reinstall is another model."""
    from chipadapt.eval.finished_tasks import by_identity

    package = tmp_path / "site" / "fake_encoder_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "model.safetensors").write_bytes(b"v1")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    settings = {"encoders": {"minilm": {"package": "fake_encoder_pkg", "path": None}}}
    before = by_identity(settings)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"bytecode")  # the first import
    assert by_identity(settings) == before
    (package / "model" / "model.safetensors").write_bytes(b"v2 weights")  # upgraded
    assert by_identity(settings) != before
    assert by_identity({"package": "not_installed_pkg"}) == {
        "package": {"package": "not_installed_pkg", "identity": None}
    }
