"""A task killed half-way keeps the answers its model had given: the rerun asks only for the rest
(io/answer_journal.py, through evaluate_folder)."""

import json

import pytest
from helpers import eval_tasks  # noqa: F401  (the task's _target_ module)
from helpers.models import tiny_llama
from omegaconf import OmegaConf

from chipadapt.eval import loglikelihood
from chipadapt.eval import run as eval_run
from chipadapt.io import answer_journal
from chipadapt.models import text_generation

PROMPTS = [f"module m{i}(input a, output y); assign y = {'~' * (i % 3)}a;" for i in range(7)]
PAIRS = [[f"Question {i}: which gate inverts?", f" answer {c}"] for i in range(5) for c in "AB"]


# evaluate_folder's dtype and attn_implementation: evaluate.py passes model.dtype and model.attn_implementation.
FLOAT32 = ("float32", "sdpa")


def task(max_new_tokens: int = 6) -> OmegaConf:
    return OmegaConf.create(
        {
            "answers": {
                "_target_": "helpers.eval_tasks.AnsweringTask",
                "prompts": PROMPTS,
                "pairs": PAIRS,
                "max_new_tokens": max_new_tokens,
            }
        }
    )


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def asked(monkeypatch):
    """How many prompts reach the decoder and how many requests reach the scorer; rows of at most 24
    tokens, so the scorer works in several batches."""
    counts = {"prompts": 0, "requests": 0}
    decode, score = text_generation.greedy_generate, loglikelihood.score_batch

    def counting_decode(model, prompts, *args, **kwargs):
        counts["prompts"] += len(prompts)
        return decode(model, prompts, *args, **kwargs)

    def counting_score(model, batch, pad):
        out = score(model, batch, pad)
        counts["requests"] += len({request for request, _ in out})
        return out

    monkeypatch.setattr(text_generation, "greedy_generate", counting_decode)
    monkeypatch.setattr(loglikelihood, "score_batch", counting_score)
    monkeypatch.setattr(loglikelihood, "ROW_TOKENS", 24)
    return counts


def kill_after(monkeypatch, answers: int) -> None:
    """The process dies just after the journal holds `answers` new answers."""
    record = answer_journal.AnswerJournal.record
    written = [0]

    def dying_record(self, request, answer):
        record(self, request, answer)
        written[0] += 1
        if written[0] == answers:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(answer_journal.AnswerJournal, "record", dying_record)


def test_a_task_killed_half_way_reruns_only_what_it_had_not_answered(tmp_path, model_folder, asked, monkeypatch):
    whole = eval_run.evaluate_folder(model_folder, task(), "cpu", tmp_path / "whole", *FLOAT32, resume=True)["answers"]
    assert asked == {"prompts": len(PROMPTS), "requests": len(PAIRS)}
    assert not (tmp_path / "whole" / "tasks" / "answers.answers.jsonl").exists()  # removed once the task is recorded

    run = tmp_path / "run"
    journal = run / "tasks" / "answers.answers.jsonl"
    with monkeypatch.context() as patch:
        kill_after(patch, 3)  # three prompts answered, then the kill
        with pytest.raises(KeyboardInterrupt):
            eval_run.evaluate_folder(model_folder, task(), "cpu", run, *FLOAT32, resume=True)
    assert len(journal.read_text().splitlines()) == 1 + 3
    with journal.open("a") as handle:
        handle.write('{"id": "half a line')  # the line the kill cut short
    asked.update(prompts=0, requests=0)
    with monkeypatch.context() as patch:
        kill_after(patch, len(PROMPTS) - 3 + 4)  # every prompt, and four of the scored pairs
        with pytest.raises(KeyboardInterrupt):
            eval_run.evaluate_folder(model_folder, task(), "cpu", run, *FLOAT32, resume=True)
    assert asked["prompts"] == len(PROMPTS) - 3
    asked.update(prompts=0, requests=0)
    resumed = eval_run.evaluate_folder(model_folder, task(), "cpu", run, *FLOAT32, resume=True)["answers"]
    assert asked["prompts"] == 0 and 0 < asked["requests"] <= len(PAIRS) - 4
    assert resumed["answers"] == whole["answers"]
    assert resumed["logprobs"] == pytest.approx(whole["logprobs"], abs=1e-4)
    assert not journal.exists()


def test_answers_under_other_settings_or_with_resume_off_are_asked_again(tmp_path, model_folder, asked, monkeypatch):
    journal = tmp_path / "tasks" / "answers.answers.jsonl"
    with monkeypatch.context() as patch:
        kill_after(patch, 4)
        with pytest.raises(KeyboardInterrupt):
            eval_run.evaluate_folder(model_folder, task(), "cpu", tmp_path, *FLOAT32, resume=True)
    first_key = json.loads(journal.read_text().splitlines()[0])["key"]
    asked.update(prompts=0, requests=0)
    with monkeypatch.context() as patch:  # longer answers: another key, every prompt again
        kill_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            eval_run.evaluate_folder(model_folder, task(max_new_tokens=8), "cpu", tmp_path, *FLOAT32, resume=True)
    assert asked["prompts"] == len(PROMPTS)
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["key"] != first_key and len(lines) == 2
    asked.update(prompts=0, requests=0)
    eval_run.evaluate_folder(model_folder, task(max_new_tokens=8), "cpu", tmp_path, *FLOAT32, resume=False)
    assert asked == {"prompts": len(PROMPTS), "requests": len(PAIRS)}


def test_each_sample_of_a_prompt_is_its_own_answer_and_a_smaller_batch_keeps_them(tmp_path, model_folder):
    """VerilogEval asks the same prompts n times at a temperature: n different samples, in a first run
    and after a kill. Batch size changes speed, not answers: a rerun with a smaller one reuses them."""
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
    from chipadapt.models.text_generation import generate

    model, tokenizer = load_causal_lm(model_folder, "float32", "sdpa").eval(), load_tokenizer(model_folder)
    path = tmp_path / "answers.jsonl"

    def sample_rounds(journal, rounds: int) -> list[list[str]]:
        with answer_journal.recording(journal):
            return [generate(model, tokenizer, PROMPTS[:2], 2, 12, chat=False, temperature=5.0) for _ in range(rounds)]

    first = sample_rounds(answer_journal.AnswerJournal(path, "k", model), 2)
    assert first[0] != first[1]  # two samples each, not one answer twice
    again = sample_rounds(answer_journal.AnswerJournal(path, "k", model), 3)
    assert again[:2] == first and again[2] != first[0]  # the third round was never asked before: sampled

    finished = eval_run.FinishedTasks(tmp_path / "run", {"dtype": "float32"})
    cfg = task()["answers"]
    smaller = OmegaConf.merge(cfg, {"batch_size": 1})
    assert finished.key(cfg, model_folder) != finished.key(smaller, model_folder)  # the results' key counts it
    assert finished.key(cfg, model_folder, answers=True) == finished.key(smaller, model_folder, answers=True)


def test_a_perplexity_window_scored_before_a_kill_is_not_scored_again(tmp_path, model_folder):
    from chipadapt.eval.tasks.perplexity import PerplexityTask
    from chipadapt.models.hf_folder import load_causal_lm

    model = load_causal_lm(model_folder, "float32", "sdpa").eval()
    piece, path = list(range(5, 40)), tmp_path / "answers.jsonl"
    with answer_journal.recording(answer_journal.AnswerJournal(path, "k", model)) as journal:
        first = PerplexityTask._window_nll(model, piece, journal)
    assert first > 0

    class Killed:  # the model is never asked again for a window it scored
        def __getattr__(self, name):
            raise AssertionError("scored again")

    reopened = answer_journal.AnswerJournal(path, "k", model)
    assert PerplexityTask._window_nll(Killed(), piece, reopened) == first
    assert PerplexityTask._window_nll(model, piece, None) == pytest.approx(first)
