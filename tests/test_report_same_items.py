"""The report pairs two steps' per-item records only where they are the same items, as compare.py does
(eval/same_items.py): other questions under the same ids, or perplexity scored with other limits, give
"not measured" with the reason, never a paired difference; two tokenizers' runs on the same text still pair."""

import json

from helpers.fake_reproduction import (
    build,
    context,
    corpus_items,
    dapt_manifest,
    fake_run,
    ifeval_items,
    mcq_items,
    row,
    write_eval,
    write_items,
    write_json,
)

from chipadapt.reproduce.report.pairs import NotPaired, between, documents
from chipadapt.reproduce.report.power import NOT_MEASURED, REPRODUCES
from chipadapt.reproduce.steps import Step


def with_questions(items: list[dict], prefix: str) -> list[dict]:
    return [{**item, "question": f"{prefix} {item['id']}"} for item in items]


def limits(out, name: str, **corpus_ppl) -> None:
    """The step's manifest as evaluate.py records it: config.eval.corpus_ppl."""
    write_json(out / name / "manifest.json", {"config": {"eval": {"corpus_ppl": corpus_ppl}}})


def test_other_questions_under_the_same_ids_are_not_paired(tmp_path):
    steps = fake_run(tmp_path)
    right = [k % 3 == 0 for k in range(114)]
    write_items(tmp_path / "eval_base", "mcq", with_questions(mcq_items(right), "What is"))
    write_items(tmp_path / "eval_sft", "mcq", with_questions(mcq_items(right), "What is"))
    # the DAPT model answered another file's questions numbered q0..q113: far more of them right
    write_items(tmp_path / "eval_dapt", "mcq", with_questions(mcq_items([k % 2 == 0 for k in range(114)]), "Why"))
    found = between(context(tmp_path, steps), "eval_base", "eval_dapt", "mcq.acc")
    assert isinstance(found, NotPaired) and "114 of 114 items of eval_dapt differ" in found.reason
    assert between(context(tmp_path, steps), "eval_base", "eval_sft", "mcq.acc").n == 114  # the same questions
    text = build(tmp_path, steps)
    cells = row(text, "DAPT costs a little general knowledge (MMLU)")
    assert cells[3] == NOT_MEASURED and "eval_dapt not paired" in cells[2] and "mcnemar" not in cells[2].split(";")[1]
    assert "not paired: mcq: 114 of 114 items of eval_dapt differ" in cells[4] and "question 'What is q0'" in cells[4]
    assert "eval_dapt: not paired (mcq: 114 of 114" in text


def test_perplexity_scored_with_another_document_limit_is_not_paired(tmp_path):
    steps = fake_run(tmp_path)
    limits(tmp_path, "eval_base", max_tokens=12288, max_tokens_per_document=1024)
    limits(tmp_path, "eval_dapt", max_tokens=12288, max_tokens_per_document=64)
    for name in ("eval_dapt_lr5e-6", "eval_dapt_lr5e-5", "eval_dapt_lr3e-4", "eval_dapt_lr1e-3"):
        limits(tmp_path, name, max_tokens=12288, max_tokens_per_document=1024)
    limits(tmp_path, "eval_dapt_lr1e-3", max_tokens=256)  # an older run without a per-document limit
    ctx = context(tmp_path, steps)
    found = documents(ctx, "eval_base", "eval_dapt")
    assert isinstance(found, NotPaired) and "max_tokens_per_document 1024 vs 64" in found.reason
    assert isinstance(documents(ctx, "eval_base", "eval_dapt", domain=False), NotPaired)
    assert documents(ctx, "eval_base", "eval_dapt_lr5e-5").d.n == 72  # the same limits: paired
    text = build(tmp_path, steps)
    cells = row(text, "DAPT lowers domain perplexity")
    assert cells[3] == NOT_MEASURED and "own validation only" in cells[2] and "documents pooled" not in cells[2]
    assert "not paired: corpus_ppl: eval_dapt was scored with other limits" in cells[4]
    assert "is not paired with the general model's: corpus_ppl: eval_dapt was scored with other limits" in text
    large = row(text, "Large DAPT learning rate hurts general ability")
    assert large[3] == NOT_MEASURED and "max_tokens 12288 vs 256" in large[4]
    assert "(runs/eval_dapt_lr1e-3) is not paired with the general model's evaluation: corpus_ppl:" in text


def test_the_chip_models_drift_is_not_judged_on_other_prompts(tmp_path):
    steps = fake_run(tmp_path)
    passed = [k % 2 == 0 for k in range(100)]
    for name, prompt in (("eval_base", "Write a poem"), ("eval_sft", "Write a letter")):
        items = [{**item, "prompt": f"{prompt} {item['id']}"} for item in ifeval_items(passed)]
        write_items(tmp_path / name, "ifeval", items)
    cells = row(build(tmp_path, steps), "The chip model follows instructions worse")
    assert cells[3] == NOT_MEASURED and "not paired" in cells[2] and "ifeval: 100 of 100 items" in cells[4]


def test_two_tokenizers_on_the_same_text_still_pair(tmp_path):
    # The augmented arm's documents hold fewer tokens, and its first (unscored) token covers a few more
    # bytes: the same documents, under the same limits (same_text_ppl_args).
    steps = fake_run(tmp_path)
    ledger = json.loads((tmp_path / "steps.json").read_text())
    dapt_manifest(tmp_path, "dapt_aug_lr5e-5", 5e-5, 1.3, 1.1, steps=12)
    steps.append(Step("dapt_aug_lr5e-5", "train.py", (), "dapt", meta={"tokenizer": "augmented", "lr": 5e-5}))
    augmented = [{**item, "tokens": item["tokens"] - 9, "bytes": item["bytes"] - 3} for item in corpus_items(0.9, 1.0)]
    write_eval(tmp_path, "eval_dapt_aug_lr5e-5", {"corpus_ppl": augmented})
    write_eval(tmp_path, "eval_dapt_lr5e-5_same_text", {"corpus_ppl": corpus_items(1.0, 1.0)})
    for name in ("eval_dapt_aug_lr5e-5", "eval_dapt_lr5e-5_same_text"):
        limits(tmp_path, name, max_tokens=12288, max_chars_per_document=3000)
        steps.append(Step(name, "evaluate.py", (), "models", label=name))
    ledger |= {n: {"status": "completed"} for n in ("dapt_aug_lr5e-5", "eval_dapt_aug_lr5e-5")}
    write_json(tmp_path / "steps.json", ledger | {"eval_dapt_lr5e-5_same_text": {"status": "completed"}})
    cells = row(build(tmp_path, steps), "Augmented tokenizer costs nothing after DAPT")
    assert (
        cells[3] == REPRODUCES
        and "dapt_aug_lr5e-5 minus the base tokenizer's run (lr 5e-05): domain -10.0%" in cells[2]
    )
    # with another character limit the texts differ: not paired, and the row says why
    limits(tmp_path, "eval_dapt_aug_lr5e-5", max_tokens=12288, max_chars_per_document=2000)
    cells = row(build(tmp_path, steps), "Augmented tokenizer costs nothing after DAPT")
    assert cells[3] == NOT_MEASURED and "max_chars_per_document 3000 vs 2000" in cells[4]
