"""bug_summary's judge verdicts are journaled with the model's answers (io/answer_journal.py): a run killed
after k ratings is rerun without asking the judge for those k, one with every rating journaled loads no
judge, and another judge rates every output again, from the model's journaled answers: the journal's key
(eval/finished_tasks.py) leaves the judge out (eval/tasks/bug_summary.py)."""

import pytest
from conftest import write_jsonl
from helpers.models import perturbed_copy, tiny_llama
from hydra.utils import instantiate
from omegaconf import OmegaConf

from chipadapt.eval.finished_tasks import FinishedTasks
from chipadapt.eval.rouge import RougeL
from chipadapt.eval.tasks.bug_summary import BugSummaryTask
from chipadapt.io.answer_journal import AnswerJournal, recording
from chipadapt.models import inference

THREADS = [
    {"id": "fifo", "thread": "[a] The FIFO overflowed; fixed the full flag.", "technical": "full flag fixed"},
    {"id": "reset", "thread": "[b] Reset was not synchronised.\n\n[c] Added a two-flop synchroniser."},
]
RATINGS = 3 * len(THREADS)  # technical, managerial and assignment of each thread


class Killed(Exception):
    """The process killed in the middle of the task."""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_folder, "float32", "sdpa").eval(), load_tokenizer(tiny_folder)


@pytest.fixture
def judged(monkeypatch):
    """Counts of the judge's loads and ratings (its forward passes); `kill_after` stops the task after
    that many ratings."""
    counts = {"ratings": 0, "loads": 0, "kill_after": None}
    load = inference.load_for_inference

    def rating(module, args, kwargs):
        if counts["kill_after"] is not None and counts["ratings"] >= counts["kill_after"]:
            raise Killed
        counts["ratings"] += 1

    def counting_load(*args, **kwargs):
        counts["loads"] += 1
        loaded = load(*args, **kwargs)
        loaded.model.register_forward_pre_hook(rating, with_kwargs=True)
        return loaded

    monkeypatch.setattr(inference, "load_for_inference", counting_load)
    return counts


def task(tmp_path, judge_folder) -> BugSummaryTask:
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)
    return BugSummaryTask(str(threads), "thread", None, 500, 4, 2, {"model_path": str(judge_folder)}, RougeL(True))


def run(tmp_path, judge_folder, model, tokenizer) -> dict:
    journal = AnswerJournal(tmp_path / "tasks" / "bug_summary.answers.jsonl", "the task's key", model)
    with recording(journal):
        return task(tmp_path, judge_folder).run(model, tokenizer)


def likert(results: dict) -> dict:
    return {k: v for k, v in results.items() if k.endswith(".likert")}


def test_a_rerun_after_a_kill_asks_the_judge_only_for_the_outputs_not_yet_rated(tmp_path, tiny, tiny_folder, judged):
    whole = task(tmp_path, tiny_folder).run(*tiny)  # no journal open: every output rated
    assert judged["ratings"] == RATINGS
    judged.update(ratings=0, kill_after=4)
    with pytest.raises(Killed):
        run(tmp_path, tiny_folder, *tiny)
    assert judged["ratings"] == 4
    judged.update(ratings=0, loads=0, kill_after=None)
    resumed = run(tmp_path, tiny_folder, *tiny)
    assert judged["ratings"] == RATINGS - 4 and judged["loads"] == 1
    assert likert(resumed) == pytest.approx(likert(whole))  # the journaled ratings are the judge's own
    judged.update(ratings=0, loads=0)
    again = run(tmp_path, tiny_folder, *tiny)  # every rating journaled: no judge loaded
    assert judged["ratings"] == 0 and judged["loads"] == 0
    assert likert(again) == likert(resumed)


def task_config(threads, judge_folder):
    """The task's settings as conf/eval/bug_summary.yaml composes them, which evaluate.py keys and builds."""
    return OmegaConf.create(
        {
            "_target_": "chipadapt.eval.tasks.bug_summary.BugSummaryTask",
            "path": str(threads),
            "thread_key": "thread",
            "limit": None,
            "max_input_tokens": 500,
            "max_new_tokens": 4,
            "batch_size": 2,
            "judge": {"model_path": str(judge_folder)},
            "rouge": {"_target_": "chipadapt.eval.rouge.RougeL", "use_stemmer": True},
        }
    )


def test_another_judge_rates_every_output_again_from_the_journaled_answers(tmp_path, tiny, tiny_folder, judged):
    model, tokenizer = tiny
    records = FinishedTasks(tmp_path, {"dtype": "float32", "attn": "sdpa", "device": "cpu"})
    other = perturbed_copy(tiny_folder, tmp_path / "other_judge")
    threads = write_jsonl(tmp_path / "threads.jsonl", THREADS)  # once: the key holds its size and time
    answered = []
    hook = model.register_forward_pre_hook(lambda *_: answered.append(1))

    def evaluate(judge_folder) -> dict:
        """The task as evaluate.py runs it killed before its record: keyed, built and journaled."""
        cfg = task_config(threads, judge_folder)
        with recording(records.answers("bug_summary", cfg, tiny_folder, model, reuse=True)):
            return instantiate(cfg).run(model, tokenizer)

    try:
        first = evaluate(tiny_folder)
        assert judged["ratings"] == RATINGS and answered
        answered.clear()
        judged.update(ratings=0, loads=0)
        second = evaluate(other)
    finally:
        hook.remove()
    assert not answered  # the evaluated model's summaries come from the journal: not generated again
    assert judged["ratings"] == RATINGS and judged["loads"] == 1  # the other judge rates every one of them
    assert likert(second) != likert(first)
    assert {k: v for k, v in second.items() if k.endswith(".rougeL")} == {
        k: v for k, v in first.items() if k.endswith(".rougeL")
    }
    judged.update(ratings=0, loads=0)
    evaluate(tiny_folder)  # the first judge's ratings are still journaled
    assert judged["ratings"] == 0 and judged["loads"] == 0
