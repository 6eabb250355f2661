"""bug_summary with another judge after a finished (recorded) run: the journal of the model's answers is
deleted once the task is recorded, so the other judge had the model generate every output again. The
finished run's per-item records hold those outputs: the record keeps the key they were answered under
(eval/finished_tasks.py), and a rerun under the same key rates them without generating; one whose
generation settings differ generates again. The key of the answers is the one the task started with (a
model folder rewritten while it ran is another model), a record of another run is not taken beside new
per-item records, and the steered model's results keep the attributes their recorded answers were given.
A run that fails before its own record (a full disk, a kill) costs its rerun no generation: the finished
run's record stays until replaced, and outputs taken from it are journaled as they are taken."""

import json
from pathlib import Path

import pytest
from conftest import write_jsonl
from helpers.models import perturbed_copy, tiny_llama
from omegaconf import OmegaConf

from chipadapt.eval import finished_tasks
from chipadapt.eval import run as eval_run
from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.run import evaluate_folder
from chipadapt.eval.steering import start_steering, stop_steering
from chipadapt.eval.tasks import bug_summary
from chipadapt.models import inference

THREADS = [
    {"id": "fifo", "thread": "[a] The FIFO overflowed; fixed the full flag.", "technical": "full flag fixed"},
    {"id": 7, "thread": "[b] Reset was not synchronised.\n\n[c] Added a two-flop synchroniser."},
]
RATINGS = 3 * len(THREADS)  # technical, managerial and assignment of each thread


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def counted(monkeypatch):
    """Calls of the evaluated model's generation (bug_summary's `generate`) and the judge's ratings."""
    counts = {"generate": 0, "ratings": 0}
    generate, load = bug_summary.generate, inference.load_for_inference

    def counting_generate(*args, **kwargs):
        counts["generate"] += 1
        return generate(*args, **kwargs)

    def counting_load(*args, **kwargs):  # bug_summary loads its judge through it
        loaded = load(*args, **kwargs)
        loaded.model.register_forward_pre_hook(lambda *_: counts.__setitem__("ratings", counts["ratings"] + 1))
        return loaded

    monkeypatch.setattr(bug_summary, "generate", counting_generate)
    monkeypatch.setattr(inference, "load_for_inference", counting_load)
    return counts


@pytest.fixture
def forwards(monkeypatch):
    """Forward passes of the evaluated model (a generation replayed from the journal makes none)."""
    count = {"forwards": 0}
    load = eval_run.load_for_inference

    def counting_load(*args, **kwargs):
        loaded = load(*args, **kwargs)
        loaded.model.register_forward_pre_hook(lambda *_: count.__setitem__("forwards", count["forwards"] + 1))
        return loaded

    monkeypatch.setattr(eval_run, "load_for_inference", counting_load)
    return count


def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def evaluate(run_dir, model_folder, threads, judge_folder, max_new_tokens: int = 4, resume: bool = True) -> dict:
    """evaluate.py's evaluation of bug_summary in `run_dir` (resumed: kept tasks, records and journals)."""
    task = {
        "_target_": "chipadapt.eval.tasks.bug_summary.BugSummaryTask",
        "path": str(threads),
        "thread_key": "thread",
        "limit": None,
        "max_input_tokens": 500,
        "max_new_tokens": max_new_tokens,
        "batch_size": 2,
        "judge": {"model_path": str(judge_folder)},
        "rouge": {"_target_": "chipadapt.eval.rouge.RougeL", "use_stemmer": True},
    }
    tasks = OmegaConf.create({"bug_summary": task})
    return evaluate_folder(model_folder, tasks, "cpu", run_dir, "float32", "sdpa", resume=resume)["bug_summary"]


def likert(results: dict) -> dict:
    return {k: v for k, v in results.items() if k.endswith(".likert")}


def predictions(run_dir) -> dict:
    return {key: item["prediction"] for key, item in read_items(items_file(run_dir, "bug_summary")).items()}


def test_another_judge_after_a_finished_run_rates_the_recorded_outputs(tmp_path, tiny_folder, counted):
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    first = evaluate(run_dir, tiny_folder, threads, tiny_folder)
    assert counted["generate"] > 0 and counted["ratings"] == RATINGS
    assert not (run_dir / "tasks" / "bug_summary.answers.jsonl").exists()  # recorded: its journal is gone
    answered = predictions(run_dir)
    counted.update(generate=0, ratings=0)
    second = evaluate(run_dir, tiny_folder, threads, other)
    assert counted["generate"] == 0  # the recorded outputs, not generated again
    assert counted["ratings"] == RATINGS  # the other judge rates every one of them
    assert predictions(run_dir) == answered
    assert likert(second) != likert(first)
    assert {k: v for k, v in second.items() if k.endswith(".rougeL")} == {
        k: v for k, v in first.items() if k.endswith(".rougeL")
    }
    assert second["hierarchical"] == first["hierarchical"] and second["threads"] == len(THREADS)
    record = json.loads((run_dir / "tasks" / "bug_summary.json").read_text())
    assert record["settings"]["judge"]["model_path"] == str(other)


def test_other_generation_settings_generate_again(tmp_path, tiny_folder, counted):
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    evaluate(run_dir, tiny_folder, threads, tiny_folder)
    counted.update(generate=0, ratings=0)
    evaluate(run_dir, tiny_folder, threads, other, max_new_tokens=3)
    assert counted["generate"] == len(bug_summary.OUTPUTS) and counted["ratings"] == RATINGS


def test_recorded_items_that_lack_a_thread_are_not_taken(tmp_path, tiny_folder, counted):
    """Per-item records that do not hold every thread's outputs (edited by hand): the model answers again."""
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    evaluate(run_dir, tiny_folder, threads, tiny_folder)
    items = items_file(run_dir, "bug_summary")
    items.write_text(items.read_text().splitlines(keepends=True)[0])
    counted.update(generate=0, ratings=0)
    evaluate(run_dir, tiny_folder, threads, other)
    assert counted["generate"] == len(bug_summary.OUTPUTS)


def test_a_model_folder_rewritten_during_the_run_is_answered_again(tmp_path, counted, monkeypatch):
    """The record's key of the answers was taken once the task had finished: a folder rewritten while the task
    ran recorded the old content's answers under the new content's key, and another judge took them."""
    model = tiny_llama(tmp_path / "model")
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(model, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    generate = bug_summary.generate

    def rewriting_generate(*args, **kwargs):
        (model / "README.md").write_text("rewritten while the task ran")
        return generate(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(bug_summary, "generate", rewriting_generate)
        evaluate(run_dir, model, threads, model)
    counted.update(generate=0, ratings=0)
    evaluate(run_dir, model, threads, other)
    assert counted["generate"] == len(bug_summary.OUTPUTS)


def test_a_run_killed_between_its_items_and_its_record_leaves_no_record_of_another_run(
    tmp_path, tiny_folder, counted, monkeypatch
):
    """A run of other generation settings killed after writing its per-item file, before its record: the
    earlier run's record stayed beside the new items, and a rerun of the earlier settings took them as its."""
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    evaluate(run_dir, tiny_folder, threads, tiny_folder, max_new_tokens=4)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(finished_tasks.FinishedTasks, "save", killed)
        with pytest.raises(KeyboardInterrupt):
            evaluate(run_dir, tiny_folder, threads, tiny_folder, max_new_tokens=3)
    counted.update(generate=0, ratings=0)
    evaluate(run_dir, tiny_folder, threads, other, max_new_tokens=4)
    assert counted["generate"] == len(bug_summary.OUTPUTS)  # max_new_tokens=3's outputs are not taken


@pytest.fixture(scope="module")
def steerlm_folder(tmp_path_factory):
    """A SteerLM model: its folder records the attribute order and template it was trained with."""
    from transformers import AutoConfig

    from chipadapt.steerlm.attribute_record import record_attribute_order

    root = Path(__file__).resolve().parents[1]
    template = OmegaConf.to_container(OmegaConf.load(root / "conf/data/template/chipnemo.yaml"))
    folder = tiny_llama(tmp_path_factory.mktemp("steer"), num_layers=1, max_position_embeddings=256)
    config = AutoConfig.from_pretrained(folder)
    record_attribute_order(config, ["quality", "humor"], template)
    config.save_pretrained(folder)
    return folder


def test_a_steered_model_rated_by_another_judge_keeps_its_attributes(tmp_path, steerlm_folder, counted):
    """The recorded answers are taken without writing a prompt: the results lost `steerlm_attributes`."""
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(steerlm_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    steering = OmegaConf.create({"generate": {"attributes": "quality:4,humor:0"}})
    try:
        start_steering(steering, steerlm_folder)
        first = evaluate(run_dir, steerlm_folder, threads, steerlm_folder)
        counted.update(generate=0, ratings=0)
        start_steering(steering, steerlm_folder)
        second = evaluate(run_dir, steerlm_folder, threads, other)
    finally:
        stop_steering()
    assert counted["generate"] == 0  # the recorded answers were taken
    assert first["steerlm_attributes"] == second["steerlm_attributes"] == "quality:4,humor:0"


def test_another_judges_run_that_cannot_write_its_items_costs_its_rerun_no_generation(
    tmp_path, tiny_folder, counted, forwards, monkeypatch
):
    """The finished run's record was dropped before the new per-item file was written: a full disk then left
    no record of the outputs, and the rerun had the model answer everything again."""
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    evaluate(run_dir, tiny_folder, threads, tiny_folder)
    with monkeypatch.context() as patched:
        patched.setattr(eval_run, "write_items", disk_full)
        with pytest.raises(OSError):
            evaluate(run_dir, tiny_folder, threads, other)
    counted.update(generate=0, ratings=0)
    forwards["forwards"] = 0
    evaluate(run_dir, tiny_folder, threads, other)
    assert forwards["forwards"] == 0  # the recorded outputs, still those of the record
    assert counted["ratings"] == 0  # the other judge's ratings, journaled before the failure


def test_another_judges_run_killed_before_its_record_leaves_the_outputs_it_took_in_its_journal(
    tmp_path, tiny_folder, counted, forwards, monkeypatch
):
    """Killed after its per-item file replaced the finished run's: that run's record no longer describes the
    file, so the outputs it took come back from the journal."""
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    run_dir = tmp_path / "run"
    evaluate(run_dir, tiny_folder, threads, tiny_folder)
    answered = predictions(run_dir)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(finished_tasks.FinishedTasks, "save", killed)
        with pytest.raises(KeyboardInterrupt):
            evaluate(run_dir, tiny_folder, threads, other)
    forwards["forwards"] = 0
    evaluate(run_dir, tiny_folder, threads, other)
    assert forwards["forwards"] == 0
    assert predictions(run_dir) == answered


def test_a_rerun_from_scratch_that_cannot_write_its_items_keeps_the_finished_record(
    tmp_path, tiny_folder, counted, monkeypatch
):
    """resume=false over a finished task, failing before its record: the finished run stays kept."""
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    run_dir = tmp_path / "run"
    first = evaluate(run_dir, tiny_folder, threads, tiny_folder)
    with monkeypatch.context() as patched:
        patched.setattr(eval_run, "write_items", disk_full)
        with pytest.raises(OSError):
            evaluate(run_dir, tiny_folder, threads, tiny_folder, resume=False)
    counted.update(generate=0, ratings=0)
    assert evaluate(run_dir, tiny_folder, threads, tiny_folder) == first
    assert counted["generate"] == 0  # kept, not run again
