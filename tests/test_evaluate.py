"""evaluate.py tasks on the tiny model: perplexity, multiple choice, IFEval; results contract."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED_DATA, write_jsonl

IFEVAL_ROWS = [
    {
        "key": 1,
        "prompt": "Describe a flip-flop. Do not use any commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Explain setup time in lowercase only.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    },
]
MCQ_ROWS = [
    {"question": "Which HDL keyword starts a module?", "choices": ["module", "banana", "river", "cloud"], "answer": 0},
    {"question": "What does a flip-flop store?", "choices": ["one bit", "a river", "a cloud", "a song"], "answer": 0},
]


def nltk_data(tmp_path):
    return SHARED_DATA / "ifeval" / "nltk_data" if SHARED_DATA.is_dir() else tmp_path


@pytest.mark.integration
def test_evaluate_writes_results_json_in_the_contract_shape(tmp_path):
    ifeval = write_jsonl(tmp_path / "ifeval.jsonl", IFEVAL_ROWS)
    mcq = write_jsonl(tmp_path / "mcq.jsonl", MCQ_ROWS)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            "model=tiny",
            "eval=[perplexity,mcq,ifeval]",
            f"eval.mcq.path={mcq}",
            "eval.mcq.num_fewshot=0",
            "eval.mcq.style=cloze",
            f"eval.ifeval.path={ifeval}",
            f"eval.ifeval.nltk_data={nltk_data(tmp_path)}",
            "eval.ifeval.max_new_tokens=8",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["perplexity"]["domain.ppl"] > 1 and results["perplexity"]["domain.tokens"] > 100
    assert 0 < results["perplexity"]["general.bpb"] < 16
    assert results["mcq"]["questions"] == 2 and 0 <= results["mcq"]["acc"] <= 1
    assert results["ifeval"]["prompts"] == 2
    for metric in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose"):
        assert 0 <= results["ifeval"][metric] <= 1
    # The responses behind the score are kept, and their verdicts add up to it.
    records = [json.loads(line) for line in (out / "ifeval_items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [str(r["key"]) for r in IFEVAL_ROWS]
    loose = [v for r in records for v in r["loose"]]
    assert len(loose) == sum(
        len(r["instruction_id_list"]) for r in IFEVAL_ROWS
    )  # an empty reply fails, it is not skipped
    assert results["ifeval"]["instruction_loose"] == pytest.approx(sum(loose) / len(loose))
    # Every task's items are written in one shape, and every metric carries its interval and item count.
    for task, n in (("perplexity", None), ("mcq", 2), ("ifeval", 2)):
        items = [json.loads(line) for line in (out / f"{task}_items.jsonl").read_text().splitlines()]
        assert items and all({"id", "scores"} <= set(item) for item in items)
        assert n is None or len(items) == n
    assert results["mcq"]["acc_n"] == 2 and results["mcq"]["acc_ci_method"] == "clopper-pearson"
    lo, hi = results["ifeval"]["instruction_loose_ci"]
    assert (
        lo <= results["ifeval"]["instruction_loose"] <= hi and results["ifeval"]["instruction_loose_n"] == 2
    )  # prompts, resampled whole
    ci = results["perplexity"]["domain.bpb_ci"]
    assert results["perplexity"]["domain.bpb_stderr"] > 0
    if results["perplexity"]["domain.bpb_n"] < 6:  # too few documents for an interval (eval/intervals.py)
        assert ci is None and results["perplexity"]["domain.bpb_ci_method"].startswith("interval n/a:")
    else:
        assert ci[0] <= results["perplexity"]["domain.bpb"] <= ci[1]
    assert (out / "results.csv").read_text().startswith("task,metric,value")
    assert "mcq/acc" in (out / "metrics.csv").read_text().splitlines()[0]  # also sent to the configured logger


def test_ifeval_verdict_does_not_depend_on_the_process_random_state(tmp_path, monkeypatch):
    """IFEval record 1122 asks for the letter "#", which its checker rejects and replaces by a random
    letter: the same response must still get the same verdict in every process."""
    import random

    from chipadapt.eval.tasks import ifeval

    row = {
        "key": 1122,
        "prompt": "Tweet about a playboy. Use the letter # at least 4 times.",
        "instruction_id_list": ["keywords:letter_frequency"],
        "kwargs": [{"let_relation": "at least", "letter": "#", "let_frequency": 4}],
    }
    path = write_jsonl(tmp_path / "ifeval.jsonl", [row])
    response = "abcdefghijklm " * 4  # half the alphabet, each letter 4 times: a random letter passes half the time
    monkeypatch.setattr(
        ifeval, "generate", lambda model, tokenizer, prompts, *args, **kwargs: [response] * len(prompts)
    )
    task = ifeval.IFEvalTask(
        str(path), str(nltk_data(tmp_path)), limit=None, max_new_tokens=8, batch_size=1, preset="chipadapt", chat=True
    )
    verdicts = set()
    for seed in range(20):
        random.seed(seed)
        verdicts.add(task.run(None, None)["instruction_strict"])
        assert random.random() == random.Random(seed).random()  # the caller's random stream is left where it was
    assert len(verdicts) == 1


def test_mcq_scores_a_known_answer_and_rejects_bad_records(tmp_path, monkeypatch):
    from chipadapt.errors import ChipadaptError
    from chipadapt.eval.tasks.mcq import MCQTask

    task = MCQTask(
        str(write_jsonl(tmp_path / "m.jsonl", MCQ_ROWS)), None, 0, None, "cloze", 4, 128, None, "chipadapt", None
    )
    import chipadapt.eval.tasks.mcq as mcq_module

    # A fake scorer: the "model" likes continuations containing 'module' or 'one bit'.
    monkeypatch.setattr(
        mcq_module,
        "continuation_logprobs",
        lambda m, t, pairs, b, n, **kwargs: [0.0 if ("module" in c or "one bit" in c) else -5.0 for _, c in pairs],
    )
    results = task.run(None, None)
    assert {k: results[k] for k in ("acc", "acc_norm", "questions", "subjects")} == {
        "acc": 1.0,
        "acc_norm": 1.0,
        "questions": 2,
        "subjects": 1,
    }
    # guessing scores 1/4; "longest choice" ties 2 ways in the first question and 3 ways in the second
    assert results["baseline_chance"] == 0.25 and results["baseline_longest"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a"], "answer": 3}\n')
    with pytest.raises(ChipadaptError, match=r"bad\.jsonl:1: not a multiple-choice record"):
        MCQTask(str(bad), None, 0, None, "cloze", 4, 128, None, "chipadapt", None)


def test_ifeval_finds_its_nltk_data_when_nltk_was_imported_first(tmp_path, monkeypatch):
    """ROUGE-L tasks import rouge_score, and so nltk, when evaluate.py builds them, before IFEval runs:
    the Punkt path must still reach nltk (NLTK_DATA is read only when nltk is first imported)."""
    if not (SHARED_DATA / "ifeval" / "nltk_data").is_dir():
        pytest.skip("shared data not present")
    import nltk

    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks import ifeval

    RougeL(use_stemmer=True)
    monkeypatch.setattr(nltk.data, "path", [p for p in nltk.data.path if "ifeval" not in str(p)])
    row = {
        "key": 7,
        "prompt": "Answer in at most two sentences.",
        "instruction_id_list": ["length_constraints:number_sentences"],
        "kwargs": [{"relation": "less than", "num_sentences": 3}],
    }
    monkeypatch.setattr(
        ifeval, "generate", lambda model, tokenizer, prompts, *args, **kwargs: ["One. Two."] * len(prompts)
    )
    task = ifeval.IFEvalTask(
        str(write_jsonl(tmp_path / "i.jsonl", [row])),
        str(nltk_data(tmp_path)),
        limit=None,
        max_new_tokens=8,
        batch_size=1,
        preset="chipadapt",
        chat=True,
    )
    assert task.run(None, None)["prompt_strict"] == 1.0
