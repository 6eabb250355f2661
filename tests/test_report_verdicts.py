"""The report's verdicts: paired tests on fake reproduction folders (results.json, per-item files,
manifests, the ledger) give "reproduces", "contradicts" or "not resolved at this size" with the size
that would resolve it; the DAPT section shows the sweep, the lr it chose and the 15% goal; a variant
missing steps still builds its report."""

import json
import random
from pathlib import Path

import pytest
from helpers.fake_reproduction import (
    LRS,
    SOURCES,
    build,
    context,
    corpus_item,
    corpus_items,
    corpus_results,
    dapt_manifest,
    fake_run,
    row,
    steps_of,
    write_eval,
    write_items,
    write_json,
)

from chipadapt.eval.paired import mcnemar
from chipadapt.reproduce.report.power import CONTRADICTS, NOT_MEASURED, NOT_RESOLVED, REPRODUCES
from chipadapt.reproduce.steps import Step


def test_not_resolved_corpus_differences_are_sized_in_documents_and_tokens(tmp_path):
    from chipadapt.reproduce.report.pairs import documents
    from chipadapt.reproduce.report.verdicts import judge_documents

    base = corpus_items(1.0, 1.0, seed=0)
    # another spread of bpb on the same documents (their bytes kept, or they would not pair): noise
    noise = [
        corpus_item(
            o["split"],
            int(o["id"].rpartition("doc")[2]),
            o["scores"][f"{o['split']}.bpb"]["num"] / o["bytes"],
            b["bytes"],
        )
        for o, b in zip(corpus_items(1.0, 1.0, seed=5), base)
    ]
    write_eval(tmp_path, "eval_base", {"corpus_ppl": base})
    write_eval(tmp_path, "eval_dapt", {"corpus_ppl": noise})
    write_json(tmp_path / "steps.json", {n: {"status": "completed"} for n in ("eval_base", "eval_dapt")})
    ctx = context(tmp_path, steps_of(["eval_base", "eval_dapt"]))
    pair = documents(ctx, "eval_base", "eval_dapt")
    assert pair.docs == {s: 12 for s in SOURCES} and pair.tokens_per_doc > 50
    # every domain document pooled: one plain paired bootstrap over the 72, WikiText-2 left out
    assert pair.measure == "domain_all.bpb" and pair.d.n == 72 and pair.d.test == "paired-permutation-random"
    verdict, _ = judge_documents(pair, -1)
    assert (
        verdict.startswith(f"{NOT_RESOLVED}, needs about ")
        and verdict.endswith(" tokens")
        and " documents / " in verdict
    )


# --- DAPT ------------------------------------------------------------------------------------------


def test_dapt_section_shows_the_sweep_the_lr_chosen_and_the_goal_met(tmp_path):
    from chipadapt.reproduce.report import dapt_section
    from chipadapt.reproduce.report.build import DAPT_EVALS

    steps = fake_run(tmp_path, drop=0.8)
    text, facts = dapt_section.section(context(tmp_path, steps), {**DAPT_EVALS, "dapt": "eval_dapt"}, "dapt", {})
    assert [a["lr"] for a in facts["arms"]] == sorted(LRS.values())
    assert all(a["eval"]["domain"][1] for a in facts["arms"])  # an interval for every lr
    assert "took `optim.lr=0.001` from dapt_lr1e-3" in text and "| **chosen** |" in text
    assert "49,152" in text  # 12 steps of 8 x 512 tokens per lr
    assert "499,712 tokens at lr 0.001, 812 tokens/s" in text
    assert facts["long"]["goal"].startswith("met: held-out domain bpb 20.0% lower")
    assert "Issue goal (at least 15% lower): met" in text


def test_dapt_row_reproduces_a_clear_fall_and_says_when_the_goal_is_missed(tmp_path):
    text = build(tmp_path / "big", fake_run(tmp_path / "big", drop=0.8))
    cells = row(text, "DAPT lowers domain perplexity")
    assert cells[3] == REPRODUCES and "-20.0%" in cells[2] and "goal met" in cells[2]
    text = build(tmp_path / "small", fake_run(tmp_path / "small", drop=0.95))
    cells = row(text, "DAPT lowers domain perplexity")
    assert cells[3] == REPRODUCES and "goal not met: 5.0% lower" in cells[2]
    text = build(tmp_path / "worse", fake_run(tmp_path / "worse", drop=1.1))
    assert row(text, "DAPT lowers domain perplexity")[3] == CONTRADICTS


def replace_corpus(out: Path, name: str, items: list[dict]) -> None:
    """A run's corpus_ppl items and results replaced, its other tasks kept."""
    write_items(out / name, "corpus_ppl", items)
    results = json.loads((out / name / "results.json").read_text())
    write_json(out / name / "results.json", {**results, "corpus_ppl": corpus_results(items)})


def skewed_items(openroad_scale: float, other_scale: float) -> list[dict]:
    """openroad's documents 40 times longer than the other sources': pooled, its bpb dominates."""
    items = []
    for split in [*SOURCES, "general"]:
        scale = {"openroad": openroad_scale, "general": 1.0}.get(split, other_scale)
        n_bytes = 20_000 if split == "openroad" else 500
        items += [corpus_item(split, i, scale * (1 + 0.01 * (i % 3)), n_bytes) for i in range(12)]
    return items


def test_the_dapt_goal_is_judged_on_all_held_out_domain_documents_pooled(tmp_path):
    # openroad (most of the held-out bytes) falls 10%, the five small sources 30%: the mean of sources
    # falls 26.7%, past the goal; the documents pooled fall about 12%, short of it.
    steps = fake_run(tmp_path)
    replace_corpus(tmp_path, "eval_base", skewed_items(1.0, 1.0))
    replace_corpus(tmp_path, "eval_dapt", skewed_items(0.9, 0.7))
    dapt = json.loads((tmp_path / "eval_dapt" / "results.json").read_text())["corpus_ppl"]
    assert dapt["domain_mean.bpb"] < 0.75 * 1.01 and dapt["domain_all.bpb"] > 0.85 * 1.01
    text = build(tmp_path, steps)
    cells = row(text, "DAPT lowers domain perplexity")
    assert cells[3] == REPRODUCES and "(72 documents pooled)" in cells[2]
    assert "goal not met: 12." in cells[2] and "| all domain documents (domain_all.bpb) | 72 |" in text


def test_runs_from_before_domain_bpb_fall_back_to_the_mean_of_sources_and_say_so(tmp_path):
    from chipadapt.reproduce.report.pairs import documents

    steps = fake_run(tmp_path)

    def one_picorv32_document(items: list[dict]) -> list[dict]:
        return [i for i in items if not i["id"].startswith("picorv32/") or i["id"] == "picorv32/doc0"]

    for name, scale in (("eval_base", 1.0), ("eval_dapt", 0.8)):
        replace_corpus(tmp_path, name, one_picorv32_document(corpus_items(scale, 1.0, pooled=False)))
    assert "domain_all.bpb" not in json.loads((tmp_path / "eval_dapt" / "results.json").read_text())["corpus_ppl"]
    pair = documents(context(tmp_path, steps), "eval_base", "eval_dapt")
    assert pair.fallback and pair.thin == ["picorv32"] and "stratified" in pair.d.test
    text = build(tmp_path, steps)
    cells = row(text, "DAPT lowers domain perplexity")
    assert (
        cells[3] == REPRODUCES
        and "domain_mean.bpb, the mean of the sources: these runs predate the pooled domain_all.bpb" in cells[2]
    )
    assert "picorv32: one held-out document each" in cells[4]
    assert "predate corpus_ppl's pooled `domain_all.bpb`" in text
    assert "| mean of sources (domain_mean.bpb) | 61 |" in text
    # pooled, the single document is resampled with the others: nothing is left out of the interval
    for name, scale in (("eval_base", 1.0), ("eval_dapt", 0.8)):
        replace_corpus(tmp_path, name, one_picorv32_document(corpus_items(scale, 1.0)))
    pair = documents(context(tmp_path, steps), "eval_base", "eval_dapt")
    assert not pair.fallback and pair.thin == [] and pair.d.test == "paired-permutation-random" and pair.d.n == 61


def test_a_large_lr_that_raises_wikitext_bpb_reproduces_the_ablation(tmp_path):
    hurt = build(tmp_path / "hurt", fake_run(tmp_path / "hurt", large_lr_general=1.1))
    cells = row(hurt, "Large DAPT learning rate hurts general ability")
    assert cells[3] == REPRODUCES and "lr 0.001 +10.0%" in cells[2]
    helped = build(tmp_path / "helped", fake_run(tmp_path / "helped", large_lr_general=0.9))
    assert row(helped, "Large DAPT learning rate hurts general ability")[3] == CONTRADICTS


# --- SFT, IFEval, RAG, MMLU ------------------------------------------------------------------------


def test_the_chip_models_ifeval_drop_and_eda_gain_are_paired_tests(tmp_path):
    text = build(tmp_path, fake_run(tmp_path))
    drift = row(text, "The chip model follows instructions worse")
    assert drift[3] == REPRODUCES and "mcnemar-tango" in drift[2] and "over 541 prompts" in drift[2]
    eda = row(text, "SFT on EDA scripts improves script generation")
    assert eda[3] == REPRODUCES and "over 40 scripts" in eda[2]
    assert "Each verdict comes from a paired test" in text and "binomial standard error" not in text


def test_a_rag_gain_of_a_few_hundredths_is_not_a_result():
    """Replaces test_reproduce.py's test of the same name (a fixed ROUGE-L threshold)."""
    from chipadapt.reproduce.report.pairs import within
    from chipadapt.reproduce.report.verdicts import retrieval_rows

    def verdict(gains: list[float]) -> str:
        items = {
            i: it
            for i, it in ((f"r{k}", {"scores": {"rougeL": 0.3, "rougeL_rag": 0.3 + g}}) for k, g in enumerate(gains))
        }
        return retrieval_rows({"rag": {"eval_sft": ("chip", within(items, "rougeL", "rougeL_rag"))}})[-1][3]

    assert verdict([0.03, -0.02, 0.01, -0.01] * 4).startswith(f"{NOT_RESOLVED}, needs about ")
    assert verdict([0.09, 0.07, 0.065, 0.08] * 4) == REPRODUCES
    assert verdict([-0.08, -0.05, -0.06, -0.07] * 4) == CONTRADICTS


def test_mmlu_at_chance_is_not_called_knowledge_kept():
    """Replaces test_reproduce.py's test of the same name (the binomial rule)."""
    from chipadapt.reproduce.report.verdicts import mmlu_row

    def verdict(base: list[bool], dapt: list[bool], ci: tuple[float, float]) -> str:
        f = {"base_acc": sum(base) / len(base), "base_ci": ci, "paired": {"eval_dapt": ("DAPT", mcnemar(base, dapt))}}
        return mmlu_row(f)[3]

    base = [k % 4 == 0 for k in range(1000)]  # at chance: its interval covers 0.25
    assert verdict(base, base, (0.22, 0.28)) == f"{NOT_RESOLVED} (the general model is at chance)"
    knows = [k % 10 < 6 for k in range(1000)]
    # 10 questions lost, 6 gained: a 0.4-point drop
    slightly = [(ok and k % 100 != 0) or (k % 100 == 7 and k < 600) for k, ok in enumerate(knows)]
    assert verdict(knows, slightly, (0.57, 0.63)).startswith(f"{NOT_RESOLVED}, needs about ")
    forgot = [ok and k % 5 != 0 for k, ok in enumerate(knows)]
    assert verdict(knows, forgot, (0.57, 0.63)) == REPRODUCES  # a resolved drop: ChipNeMo's direction
    assert verdict(forgot, knows, (0.45, 0.51)) == CONTRADICTS


def test_mmlu_row_pairs_the_dapt_model_against_the_general_model(tmp_path):
    text = build(tmp_path, fake_run(tmp_path))
    cells = row(text, "DAPT costs a little general knowledge (MMLU)")
    assert "over 114 questions" in cells[2] and "ChipAlign 0.6" not in cells[2]
    assert cells[3] == f"{NOT_RESOLVED}" and "no difference at all over 114 questions" in cells[4]


# --- graceful degradation --------------------------------------------------------------------------


def test_a_fast_like_run_without_eval_dapt_builds_with_notes(tmp_path):
    text = build(tmp_path, fake_run(tmp_path, full=False), variant="fast")
    dapt = row(text, "DAPT lowers domain perplexity")
    assert dapt[3] == NOT_MEASURED and "own validation only" in dapt[2]
    assert row(text, "Large DAPT learning rate hurts general ability")[3] == "not run"
    assert "No corpus_ppl evaluation of it in this run" in text
    assert row(text, "Domain-adapted tokenizer")[3] == "not run"
    assert "_Retriever: not in this run" in text


def test_the_validation_size_is_read_from_the_runs_record_old_and_new(tmp_path):
    # Runs capped in bytes record how many sequences each split read; runs from before keep their cap's
    # wording (data.val_max_sequences in their config).
    steps = fake_run(tmp_path, full=False)
    dapt = row(build(tmp_path, steps, variant="fast"), "DAPT lowers domain perplexity")
    assert "only its validation on 6-8 sequences per split" in dapt[4]
    for name in ("dapt", *LRS):
        path = tmp_path / name / "manifest.json"
        if path.is_file():
            manifest = json.loads(path.read_text())
            manifest.pop("data")
            manifest["config"]["data"] = {"global_batch_size": 8, "seq_len": 512, "val_max_sequences": 16}
            write_json(path, manifest)
    dapt = row(build(tmp_path, steps, variant="fast"), "DAPT lowers domain perplexity")
    assert "only its validation on 16 sequences per split" in dapt[4]


def test_arms_without_per_item_records_are_not_measured(tmp_path):
    steps = fake_run(tmp_path)
    dapt_manifest(tmp_path, "dapt_aug_lr5e-5", 5e-5, 1.3, 1.1, steps=12)
    steps.append(Step("dapt_aug_lr5e-5", "train.py", (), "dapt", meta={"tokenizer": "augmented", "lr": 5e-5}))
    ledger = json.loads((tmp_path / "steps.json").read_text())
    write_json(tmp_path / "steps.json", {**ledger, "dapt_aug_lr5e-5": {"status": "completed"}})
    cells = row(build(tmp_path, steps), "Augmented tokenizer costs nothing after DAPT")
    assert cells[3] == NOT_MEASURED and "dapt_aug_lr5e-5 1.300" in cells[2] and "no per-document records" in cells[4]


@pytest.mark.parametrize(
    ("scale", "general", "verdict"), [(1.1, 1.0, CONTRADICTS), (0.9, 1.0, REPRODUCES), (0.9, 1.1, CONTRADICTS)]
)
def test_the_augmented_arms_are_paired_by_document_with_the_base_run_at_their_lr(tmp_path, scale, general, verdict):
    # bits per byte compare across tokenizers on the same text: the default arm decides, the paper's zero
    # rows are shown beside it (listed first here: the arm is found by its tokenizer, not its place)
    steps = fake_run(tmp_path)
    ledger = json.loads((tmp_path / "steps.json").read_text())
    arms = (
        ("dapt_aug_zero_lr5e-5", "augmented (zero rows)", 1.3, 1.0),
        ("dapt_aug_lr5e-5", "augmented", scale, general),
    )
    for name, tokenizer, domain, wiki in arms:
        dapt_manifest(tmp_path, name, 5e-5, 1.3, 1.1, steps=12)
        steps.append(Step(name, "train.py", (), "dapt", meta={"tokenizer": tokenizer, "lr": 5e-5}))
        write_eval(tmp_path, f"eval_{name}", {"corpus_ppl": corpus_items(domain, wiki)})
        steps.append(Step(f"eval_{name}", "evaluate.py", (), "models", label=name))
        ledger |= {name: {"status": "completed"}, f"eval_{name}": {"status": "completed"}}
    write_json(tmp_path / "steps.json", ledger)
    cells = row(build(tmp_path, steps), "Augmented tokenizer costs nothing after DAPT")
    assert cells[3] == NOT_MEASURED  # the sweep's own evaluation cut documents by tokens: not the same text
    write_eval(tmp_path, "eval_dapt_lr5e-5_same_text", {"corpus_ppl": corpus_items(1.0, 1.0)})
    steps.append(Step("eval_dapt_lr5e-5_same_text", "evaluate.py", (), "models"))
    ledger["eval_dapt_lr5e-5_same_text"] = {"status": "completed"}
    write_json(tmp_path / "steps.json", ledger)
    cells = row(build(tmp_path, steps), "Augmented tokenizer costs nothing after DAPT")
    assert cells[3] == verdict
    assert f"dapt_aug_lr5e-5 minus the base tokenizer's run (lr 5e-05): domain {100 * (scale - 1):+.1f}%" in cells[2]
    assert "dapt_aug_zero_lr5e-5 minus the base tokenizer's run (lr 5e-05): domain +30.0%" in cells[2]
    assert ("dapt_aug_lr5e-5's new embedding rows had 49,152 DAPT tokens" in cells[4]) == (verdict == CONTRADICTS)


def test_the_tokenizers_saving_on_held_out_text_is_paired_by_document():
    from chipadapt.reproduce.report.tokenizer_section import saving_text, token_ratio
    from chipadapt.reproduce.report.verdicts import tokenizer_row

    def held(kind: str, before: list[int], after: list[int]) -> dict:
        saved = 100 * (sum(before) - sum(after)) / sum(before)
        return {"text": kind, "kind": kind, "reduction_pct": saved, "paired": token_ratio(before, after)}

    rng = random.Random(0)
    before = [rng.randint(50, 500) for _ in range(60)]
    shorter = [round(n * rng.uniform(0.93, 0.97)) for n in before]  # about 5% fewer tokens, every document
    facts = {"domain_in_sample": 9.4, "general_in_sample": 0.02, "held_out": [held("domain", before, shorter)]}
    cells = tokenizer_row(facts)
    assert cells[3] == REPRODUCES and "domain 5." in cells[2] and "paired by document" in cells[2]
    assert saving_text(facts["held_out"][0]).startswith("5.") and " [4." in saving_text(facts["held_out"][0])
    mixed = [n + (3 if k % 2 else -3) - (k == 0) for k, n in enumerate(before)]  # as many longer as shorter
    facts["held_out"] = [held("domain", before, mixed)]
    assert tokenizer_row(facts)[3].startswith(f"{NOT_RESOLVED}, needs about ")
    facts["general_in_sample"] = 2.5
    assert tokenizer_row(facts)[3] == CONTRADICTS  # general text changed


def test_a_run_restored_without_the_tokenizers_files_reports_the_corpus_count_and_says_why(tmp_path):
    from chipadapt.reproduce.report.context import Context
    from chipadapt.reproduce.report.tokenizer_section import section

    # resume_from brings the tokenizer step's records (its report, its model's fingerprint), not its files.
    counts = {"tokens_before": 1000, "tokens_after": 906, "reduction_pct": 9.4}
    report = {
        "new_tokens": 4000,
        "vocab_size_before": 49152,
        "domain": {"openroad": counts, "overall": counts},
        "general": {"general": {"tokens_before": 1000, "tokens_after": 1000, "reduction_pct": 0.0}},
    }
    write_json(tmp_path / "tokenizer" / "tokenizer_report.json", report)
    (tmp_path / "tokenizer" / "model").mkdir()
    steps = {"tokenizer": Step("tokenizer", "train.py", (), "tokenizer")}
    ledger = {"tokenizer": {"status": "completed"}}
    ctx = Context(tmp_path, tmp_path / "report", steps, ledger, tmp_path / "no-base-model", tmp_path / "shared")
    text, facts = section(ctx)
    assert facts["held_out"] == [] and facts["domain_in_sample"] == 9.4
    assert "Not counted" in text and "experiments/LOG.md" in text


def test_the_attribute_row_sizes_the_attribute_that_would_make_a_majority():
    from chipadapt.reproduce.report.alignment_verdicts import attribute_row, pairs_for_spearman

    def metrics(r: float, n: int = 135) -> dict:
        return {"spearman": r, "n": n, "mae": 1.0, "baseline_mae": 0.9}

    # two of five resolve at 135 conversations; the third strongest (humor +0.16) decides the majority
    val = {
        "quality": metrics(0.31),
        "helpfulness": metrics(0.38),
        "toxicity": metrics(0.15),
        "humor": metrics(0.16, n=97),  # labelled on fewer conversations than the others
        "creativity": metrics(0.08),
    }
    cells = attribute_row(val)
    needed = pairs_for_spearman(0.16)
    assert needed > 135 and cells[3] == f"{NOT_RESOLVED}, needs about {needed:,} conversations"
    assert "2 of 5 attributes resolved; a majority needs humor (+0.16) resolved too" in cells[4]
    assert "it has 97 labelled conversations now" in cells[4]
    val["humor"] = metrics(0.30)  # now three resolve
    assert attribute_row(val)[3] == REPRODUCES
    # A Spearman left undefined (labels or ratings all equal; recorded as null) is named, not counted.
    val["toxicity"] = {**metrics(0.0), "spearman": None}
    cells = attribute_row(val)
    assert "undefined (labels or ratings all equal): toxicity" in cells[2] and "MAE below" in cells[2]
    assert attribute_row({"quality": {**metrics(0.0), "spearman": None}})[3] == NOT_MEASURED
