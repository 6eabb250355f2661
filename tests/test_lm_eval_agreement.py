"""`preset=lm_eval` against lm-evaluation-harness 0.4.13 itself, item by item, offline.

lm-eval runs its own MMLU task YAMLs pointed at the local files in ../shared/data (eval/lm_eval_reference.py)
on a tiny random model: every question must get the same predicted choice. IFEval: lm-eval's checker and
ours must give the same verdicts for the same responses. Also the engines against Hugging Face's own.
"""

import json

import pytest
from conftest import SHARED_DATA
from helpers.models import tiny_llama

needs_shared = pytest.mark.skipif(not (SHARED_DATA / "mmlu").is_dir(), reason="../shared/data absent")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=2, max_position_embeddings=2048)


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_folder, "float32", "sdpa").eval(), load_tokenizer(tiny_folder)


def mmlu_subset(per_subject: int, subjects: int) -> tuple[list[dict], list[dict]]:
    from chipadapt.eval.tasks.mcq import first_per_subject, read_mcq

    rows = first_per_subject(read_mcq(SHARED_DATA / "mmlu" / "mmlu_test.jsonl", "mmlu"), per_subject)
    keep = sorted({r["subject"] for r in rows})[:subjects]
    dev = read_mcq(SHARED_DATA / "mmlu" / "mmlu_dev.jsonl", "mmlu_dev")
    return [r for r in rows if r["subject"] in keep], [r for r in dev if r["subject"] in keep]


@needs_shared
@pytest.mark.parametrize("style,num_fewshot", [("letters", 0), ("cloze", 0), ("letters", 2)])
def test_mmlu_predictions_equal_lm_eval_question_by_question(tmp_path, tiny_folder, tiny, style, num_fewshot):
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    from chipadapt.eval.lm_eval_reference import run_mmlu
    from chipadapt.eval.tasks.mcq import MCQTask

    rows, dev = mmlu_subset(per_subject=3, subjects=6)
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    task = MCQTask(
        str(tmp_path / "test.jsonl"),
        str(tmp_path / "dev.jsonl"),
        num_fewshot,
        None,
        style,
        batch_size=4,
        max_length=2048,
        max_per_subject=None,
        preset="lm_eval",
        subjects=None,
    )
    task.run(*tiny)
    ours = {i: item["prediction"] for i, item in enumerate(task.items)}  # task.rows are `rows`, in order
    theirs = run_mmlu(
        HFLM(pretrained=str(tiny_folder), device="cpu", batch_size=4), rows, dev, tmp_path / "tasks", style, num_fewshot
    )
    assert len(theirs) == len(rows) == 18
    assert ours == theirs


def test_lm_eval_mmlu_prompt_is_the_harness_template():
    from chipadapt.eval.presets import mmlu_context

    row = {
        "question": " What is 2+2? ",
        "choices": ["1", "2", "3", "4"],
        "answer": 3,
        "subject": "elementary_mathematics",
    }
    shot = {"question": "1+1?", "choices": ["2", "3", "4", "5"], "answer": 0, "subject": "elementary_mathematics"}
    assert mmlu_context(row, [shot], 1, "letters") == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "1+1?\nA. 2\nB. 3\nC. 4\nD. 5\nAnswer: A\n\n"
        "What is 2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )
    assert mmlu_context(row, [], 0, "cloze") == (
        "The following are questions (with answers) about elementary mathematics.\n\nQuestion: What is 2+2?\nAnswer:"
    )


@pytest.mark.skipif(not (SHARED_DATA / "ifeval").is_dir(), reason="../shared/data absent")
def test_ifeval_verdicts_equal_lm_eval_for_the_same_responses(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("NLTK_DATA", str(SHARED_DATA / "ifeval" / "nltk_data"))
    from chipadapt.eval.lm_eval_reference import ifeval_verdicts
    from chipadapt.eval.tasks import ifeval

    rows = [json.loads(line) for line in (SHARED_DATA / "ifeval" / "input_data.jsonl").read_text().splitlines()[:40]]
    # Responses that pass some instructions and fail others: upper case, commas, JSON, bullet lists, lengths.
    canned = [
        "HELLO WORLD, THIS IS ALL CAPS.",
        '```json\n{"a": 1}\n```',
        "* one\n* two\n* three",
        "",
        "Title: <<A poem>>\nshort answer without any commas at all. P.S. bye",
        " ".join(["word"] * 400),
        "Section 1\nfirst part\nSection 2\nsecond part\n***\nend",
    ]
    responses = [canned[i % len(canned)] for i in range(len(rows))]
    by_prompt = dict(zip((r["prompt"] for r in rows), responses))
    monkeypatch.setattr(ifeval, "generate", lambda model, tokenizer, prompts, *a, **k: [by_prompt[p] for p in prompts])
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = ifeval.IFEvalTask(
        str(path),
        str(SHARED_DATA / "ifeval" / "nltk_data"),
        limit=None,
        max_new_tokens=8,
        batch_size=1,
        preset="lm_eval",
        chat=True,
    )
    task.run(None, None)
    compared = 0
    for row, item, response in zip(rows, task.items, responses):
        verdicts = {json.dumps(ifeval_verdicts(row, response, seed)) for seed in range(8)}
        if len(verdicts) > 1:
            continue  # a verdict lm-eval leaves to a random draw (an argument its checker rejects): nothing to agree on
        assert [item["strict"], item["loose"]] == json.loads(verdicts.pop()), row["key"]
        compared += 1
    assert compared >= len(rows) - 2
    assert 0 < sum(all(i["strict"]) for i in task.items) < len(rows)  # the canned answers pass some and fail some


def test_greedy_decoding_with_refilled_rows_equals_hugging_face_one_prompt_at_a_time(tiny, monkeypatch):
    import torch

    from chipadapt.models import generate as slots
    from chipadapt.models.generate import greedy_generate

    model, tokenizer = tiny
    model = model.double()  # no rounding differences: any mismatch is a bookkeeping error
    prompts = [
        tokenizer.encode(p, add_special_tokens=False)
        for p in [
            "The clock tree is",
            "module TopModule(input a, output b);\n assign",
            "hi",
            "x" * 30,
            "timing closure",
            "set_max_delay",
        ]
    ]
    stop = 161  # a token this tiny model emits after a while: rows end at different steps
    expected = []
    for ids in prompts:
        out = model.generate(
            input_ids=torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=stop, pad_token_id=0
        )
        expected.append([t for t in out[0, len(ids) :].tolist() if t != stop][:24])
    assert any(len(e) < 24 for e in expected) and any(len(e) == 24 for e in expected)
    for batch_size in (1, 2, 4, 6):  # refills (1, 2, 4) and one batch that only shrinks (6)
        assert greedy_generate(model, prompts, 24, batch_size, {stop}, 0) == expected, batch_size
    monkeypatch.setattr(slots, "PREFILL_ROWS", 4)  # the first fill prefilled in two groups (4 + 2 prompts)
    assert greedy_generate(model, prompts, 24, 6, {stop}, 0) == expected
    model.float()


def test_loglikelihoods_equal_lm_eval_hflm_with_shared_contexts_and_truncation(tiny_folder, tiny):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from chipadapt.eval.loglikelihood import loglikelihoods

    pairs = [
        (c, x)
        for c in ["The clock tree", "Question: setup time?\nAnswer:", "", "trailing space "]
        for x in [" is balanced", " A", "(input a);", " B"]
    ]
    for max_length in (512, 8):
        lm = HFLM(pretrained=str(tiny_folder), device="cpu", batch_size=3, max_length=max_length)
        theirs = [ll for ll, _ in lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])]
        ours = loglikelihoods(*tiny, pairs, rows_per_batch=2, max_length=max_length, add_special_tokens=True)
        assert ours == pytest.approx(theirs, abs=1e-4)
