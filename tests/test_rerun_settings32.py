"""A rerun of evaluate.py in a folder with other settings: what counts as another measurement (and is set
aside in tasks/.stale/), what another model is after a run that read none, and what compare.py pairs.
- a references-only result never pairs with a model's, even "the same model's";
- after a references-only run (its manifest names no model) another model is refused, taken from the task
  records; and a record of another model is a change (FinishedTasks.changed_settings);
- answer_without_context decides which figures are kept: a change is set aside; batch_size is not a change;
- a rerun killed between its items and its record leaves no mismatched copy in .stale on the next rerun;
- the same model is its content and its configured loading: after a references-only run, its files copied
  with new dates, or a job requeued where `auto` picks another attention kernel, goes on (the tasks run
  again without a warning or a copy set aside), and overwrite=true with it keeps its tasks."""

import json
import logging
import os

import pytest
from conftest import CONF
from omegaconf import OmegaConf, open_dict

from chipadapt.errors import ChipadaptError
from chipadapt.eval import run as eval_run
from chipadapt.eval.finished_tasks import STALE_FOLDER, FinishedTasks
from chipadapt.eval.same_items import NotSameItems, same_settings
from chipadapt.models.inference import inference_settings

TARGET = "test_rerun_settings32.Task"
FLOAT32 = ("float32", "sdpa")


class Task:
    """A task with verilog's references_only and qa's answer_without_context (rougeL only with it)."""

    def __init__(
        self,
        name: str,
        references_only: bool = False,
        passed: int = 1,
        answer_without_context: bool = False,
        limit: int = 2,
        batch_size: int = 1,
    ):
        self.name, self.references_only, self.passed = name, references_only, passed
        self.answer_without_context, self.limit = answer_without_context, limit
        self.items = None

    @property
    def needs_model(self) -> bool:
        return not self.references_only

    def run(self, model, tokenizer) -> dict:
        self.items = [{"id": str(i), "scores": {"pass@1": float(i < self.passed)}} for i in range(self.limit)]
        results = {"pass@1": self.passed / self.limit, "pass@1_n": self.limit}
        if self.answer_without_context:
            results["rougeL"] = 0.42
        return results


class _Loaded:
    model = tokenizer = None


def tasks(**settings) -> OmegaConf:
    return OmegaConf.create({name: {"_target_": TARGET, "name": name, **extra} for name, extra in settings.items()})


def stale(run) -> list:
    folder = run / "tasks" / STALE_FOLDER
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def evaluate(tmp_path, monkeypatch):
    """evaluate.py's job in-process on model A or B (two folders; none is loaded)."""
    from hydra import compose, initialize_config_dir

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.models import hf_folder

    models = {}
    for name in "AB":
        models[name] = tmp_path / f"model{name}"
        models[name].mkdir()
        (models[name] / "model.safetensors").write_bytes(b"weights " + name.encode())
        (models[name] / "config.json").write_text("{}")
    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: _Loaded())
    monkeypatch.setattr(hf_folder, "resolve_model_folder", lambda cfg: models[cfg.path[-1]])
    out = tmp_path / "run"

    def job(model: str, overwrite: bool = False, extra: tuple = (), **settings):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "evaluate",
                overrides=[
                    f"paths.output_dir={out}",
                    f"model.path={models[model]}",
                    f"overwrite={overwrite}",
                    *extra,
                ],
            )
        with open_dict(cfg):
            cfg.eval = tasks(**settings)
        return eval_run.run(cfg)

    return job, out


def test_a_references_only_result_never_pairs_with_a_models_even_of_the_same_model():
    model, references = {"references_only": False, "limit": 2}, {"references_only": True, "limit": 2}
    for a, b in ((model, references), (references, model), ({"limit": 2}, references)):
        with pytest.raises(NotSameItems, match=r"scored the reference solutions.*the reference solutions are not"):
            same_settings("verilog", "A", "B", a, b, same_model=True)
    assert same_settings("verilog", "A", "B", references, dict(references), same_model=False) == []


def test_another_model_after_a_references_only_run_is_refused_by_the_task_records(evaluate):
    job, out = evaluate
    job("A", verilog={}, mcq={"passed": 1})
    job("A", verilog={"references_only": True, "passed": 2})  # its manifest names no model
    assert (json.loads((out / "manifest.json").read_text()).get("inputs") or {}).get("model") is None
    mcq = (out / "mcq_items.jsonl").read_bytes()
    with pytest.raises(ChipadaptError, match=r"holds an evaluation of another model or loading \(tasks/mcq: model"):
        job("B", mcq={"passed": 0})
    assert (out / "mcq_items.jsonl").read_bytes() == mcq  # model A's answers are still the folder's
    job("A", mcq={"passed": 1})  # the same model goes on
    job("B", overwrite=True, mcq={"passed": 0})  # overwrite=true replaces the earlier evaluation
    assert json.loads((out / "results.json").read_text()).keys() == {"mcq"}


def test_a_record_of_another_model_is_a_change_and_set_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_run, "load_for_inference", lambda *args: _Loaded())
    run = tmp_path / "run"
    for name in "AB":
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"weights " + name.encode())
    eval_run.evaluate_folder(tmp_path / "A", tasks(mcq={}), "cpu", run, *FLOAT32, resume=True)
    record = FinishedTasks(run, inference_settings(*FLOAT32, "cpu"))
    measured = record.measured_with(tasks(mcq={}).mcq, tmp_path / "B", {})
    assert [c.split(" ", 2)[:2] for c in record.changed_settings("mcq", measured)] == [["model", "files"]]
    eval_run.evaluate_folder(tmp_path / "B", tasks(mcq={}), "cpu", run, *FLOAT32, resume=True)
    (aside,) = stale(run)
    assert sorted(p.name for p in aside.iterdir()) == ["mcq.json", "mcq_items.jsonl"]


def test_answer_without_context_is_a_change_but_batch_size_is_not(tmp_path):
    run = tmp_path / "run"
    eval_run.evaluate_folder(
        None, tasks(qa={"references_only": True, "answer_without_context": True}), "cpu", run, *FLOAT32, resume=True
    )
    record = FinishedTasks(run, {})
    faster = record.measured_with(
        tasks(qa={"references_only": True, "answer_without_context": True, "batch_size": 8}).qa, None, {}
    )
    assert record.changed_settings("qa", faster) == []
    eval_run.evaluate_folder(
        None, tasks(qa={"references_only": True, "answer_without_context": False}), "cpu", run, *FLOAT32, resume=True
    )
    (aside,) = stale(run)  # the rougeL its first run measured is kept
    assert "rougeL" in json.loads((aside / "qa.json").read_text())["results"]
    assert "rougeL" not in json.loads((run / "tasks" / "qa.json").read_text())["results"]


def test_a_rerun_killed_before_its_record_leaves_no_mismatched_copy_aside(tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = {"references_only": True, "passed": 0}
    eval_run.evaluate_folder(None, tasks(verilog=first), "cpu", run, *FLOAT32, resume=True)
    record, items = (run / "tasks" / "verilog.json").read_bytes(), (run / "verilog_items.jsonl").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    other = {"references_only": True, "passed": 1, "limit": 3}
    monkeypatch.setattr(FinishedTasks, "save", killed)
    with pytest.raises(KeyboardInterrupt):  # the new items are written, the old record stays
        eval_run.evaluate_folder(None, tasks(verilog=other), "cpu", run, *FLOAT32, resume=True)
    monkeypatch.undo()
    eval_run.evaluate_folder(None, tasks(verilog=other), "cpu", run, *FLOAT32, resume=True)
    (aside,) = stale(run)  # one copy, the one set aside before the kill, with its own items
    assert (aside / "verilog.json").read_bytes() == record and (aside / "verilog_items.jsonl").read_bytes() == items
    # Where the only copy of the record is left beside another run's items, those are not kept as its own.
    for path in stale(run):
        for file in path.iterdir():
            file.unlink()
        path.rmdir()
    (run / "verilog_items.jsonl").write_text('{"id": "x", "scores": {}}\n')
    aside = FinishedTasks(run, {}).set_aside("verilog")
    assert sorted(p.name for p in aside.iterdir()) == ["verilog.json"]


def _new_dates(folder) -> None:
    """The same bytes with other modification times (cp without -p, rsync without -t, a fresh clone)."""
    for path in folder.iterdir():
        os.utime(path, (path.stat().st_atime + 100, path.stat().st_mtime + 100))


@pytest.mark.parametrize("references_between", [False, True])
def test_the_same_model_with_new_file_dates_goes_on_without_a_warning(evaluate, tmp_path, caplog, references_between):
    job, out = evaluate
    job("A", mcq={})
    if references_between:
        job("A", verilog={"references_only": True})  # its manifest names no model: the records do
    _new_dates(tmp_path / "modelA")
    with caplog.at_level(logging.INFO):
        job("A", mcq={})  # not refused: the same content
    assert stale(out) == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "mcq: finished earlier with other settings" in caplog.text  # run again under its key, as before


def test_another_content_after_a_references_only_run_is_refused_in_words(evaluate, tmp_path):
    job, out = evaluate
    job("A", mcq={})
    job("A", verilog={"references_only": True})
    (tmp_path / "modelA" / "model.safetensors").write_bytes(b"weights Z")  # retrained in place, same size
    _new_dates(tmp_path / "modelA")
    with pytest.raises(ChipadaptError, match=r"tasks/mcq: model files \(content fingerprint\): '[0-9a-f]{12}' ->"):
        job("A", mcq={})


@pytest.mark.parametrize("references_between", [False, True])
def test_a_job_requeued_where_auto_attention_resolves_otherwise_goes_on(evaluate, monkeypatch, references_between):
    from chipadapt.models import hf_folder

    job, out = evaluate
    kernel = {"auto": "flash_attention_2"}  # a GPU node with flash-attn
    monkeypatch.setattr(hf_folder, "resolve_attention", lambda attn: kernel.get(attn, attn))
    auto = ("model.attn_implementation=auto", "model.dtype=bfloat16")
    job("A", extra=auto, mcq={})
    assert json.loads((out / "tasks" / "mcq.json").read_text())["running"]["attn"] == "flash_attention_2"
    if references_between:
        job("A", extra=auto, verilog={"references_only": True})
    kernel["auto"] = "sdpa"  # requeued onto a node without it
    job("A", extra=auto, mcq={})
    assert stale(out) == []
    # An attention configured otherwise is another loading: refused after a references-only run.
    with pytest.raises(ChipadaptError, match=r"model.attn_implementation: 'auto' -> 'eager'"):
        job("A", extra=("model.attn_implementation=eager", "model.dtype=bfloat16"), verilog={"references_only": True})


def test_a_changed_configured_attention_is_a_change_the_resolved_one_alone_is_not(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "model.safetensors").write_bytes(b"weights A")
    flash = {"dtype": "bfloat16", "attn": "flash_attention_2", "device": "cuda"}
    sdpa = {"dtype": "bfloat16", "attn": "sdpa", "device": "cpu"}
    FinishedTasks(run, flash, "auto").save(
        "mcq",
        "k",
        {"x": 1.0},
        False,
        FinishedTasks(run, flash, "auto").measured_with(tasks(mcq={}).mcq, tmp_path / "A", {}),
    )
    record = FinishedTasks(run, sdpa, "auto")
    assert record.changed_settings("mcq", record.measured_with(tasks(mcq={}).mcq, tmp_path / "A", {})) == []
    assert record.earlier_results(set(), tmp_path / "A") == {"mcq": {"x": 1.0}}
    other = FinishedTasks(run, sdpa, "sdpa")
    assert other.changed_settings("mcq", other.measured_with(tasks(mcq={}).mcq, tmp_path / "A", {})) == [
        "model.attn_implementation 'auto' -> 'sdpa'"
    ]


def test_overwrite_after_a_references_only_run_keeps_the_same_models_tasks(evaluate):
    job, out = evaluate
    job("A", mcq={})
    job("A", verilog={"references_only": True})
    mcq = (out / "mcq_items.jsonl").read_bytes()
    job("A", overwrite=True, verilog={"references_only": True})  # a requeued overwrite=true line resumes
    assert (out / "mcq_items.jsonl").read_bytes() == mcq
    assert json.loads((out / "results.json").read_text()).keys() == {"mcq", "verilog"}
    job("B", overwrite=True, verilog={"references_only": True})  # another model's: cleared
    assert not (out / "mcq_items.jsonl").exists()
    assert json.loads((out / "results.json").read_text()).keys() == {"verilog"}
