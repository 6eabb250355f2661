"""The merge study pairs two merge runs' per-item records only where they are the same items, as the rest of
the report does (report/pairs.py, eval/same_items.py): other prompts under the same ids, or documents scored
with other limits, give "not measured" with the reason, never a paired difference."""

import json

from test_merge_report import fake_out, line_of

from chipadapt.reproduce.report import merge_section
from chipadapt.reproduce.report.merge_runs import DOMAIN, INSTRUCT
from chipadapt.reproduce.report.pairs import NotPaired
from chipadapt.reproduce.report.power import NOT_MEASURED, REPRODUCES
from chipadapt.reproduce.report.verdicts import merge_rows


def with_prompts(path, text: str) -> None:
    """The run's IFEval records with the prompt each was asked (as ifeval writes them)."""
    items = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**item, "prompt": f"{text} {item['id']}"}) + "\n" for item in items))


def limits(folder, **corpus_ppl) -> None:
    """The run's manifest as evaluate.py records it: config.eval.corpus_ppl."""
    (folder / "manifest.json").write_text(json.dumps({"config": {"eval": {"corpus_ppl": corpus_ppl}}}))


def test_a_chip_model_run_on_other_prompts_is_not_paired_with_chipalign(tmp_path):
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    for path in ctx.out.rglob("ifeval_items.jsonl"):
        with_prompts(path, "Write a poem")
    with_prompts(ctx.out / "eval_sft" / "ifeval_items.jsonl", "Write a letter")  # another file's p00..p59
    text, facts = merge_section.section(ctx)
    chip = facts["tests"]["chip model"]
    for key in ("ifeval.prompt_loose", INSTRUCT):
        assert isinstance(chip[key], NotPaired) and "60 of 60 items of chipalign 0.4 differ" in chip[key].reason
    assert chip[DOMAIN].n == 14  # the documents are the same: still paired
    assert facts["tests"]["instruct model"][INSTRUCT].n == 50  # the same prompts: paired
    row = line_of(text, "| chipalign 0.4 − chip model | IFEval instr. (loose) |")
    assert "| – | – |" in row and "not measured: not paired: ifeval: 60 of 60 items" in row
    rows = {r[0]: r for r in merge_rows(facts)}
    restores = rows["ChipAlign restores instruction following"]
    assert restores[3] == NOT_MEASURED and "not paired: ifeval: 60 of 60 items of chipalign 0.4" in restores[4]
    # merge_balance is scaled by the ends on the same prompts: with the chip model's unpaired, it says why
    assert isinstance(facts["lambda_test"]["balance"], NotPaired)
    best06 = rows["Best ChipAlign lambda is 0.6"]
    assert "merge_balance not measured (not paired)" in best06[2]
    assert best06[3] == NOT_MEASURED and "not paired: ifeval: 60 of 60" in best06[4]


def test_a_baseline_scored_with_another_document_limit_is_not_paired_on_domain_bpb(tmp_path):
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    for folder in (ctx.out / "merge_chipalign" / "0", ctx.out / "merge_chipalign" / "1", ctx.out / "eval_sft"):
        limits(folder, max_tokens=12288, max_tokens_per_document=1024)
    limits(ctx.out / "merge_linear", max_tokens=12288, max_tokens_per_document=64)
    text, facts = merge_section.section(ctx)
    domain = facts["tests"]["linear"][DOMAIN]
    assert isinstance(domain, NotPaired) and "max_tokens_per_document 64 vs 1024" in domain.reason
    assert facts["tests"]["linear"][INSTRUCT].n == 50  # limits on documents leave the prompts paired
    assert facts["tests"]["chip model"][DOMAIN].n == 14  # the same limits: paired
    assert isinstance(facts["balances"]["linear"], NotPaired)  # merge_balance needs both measures paired
    row = line_of(text, "| chipalign 0.4 − linear | domain bpb |")
    assert "not measured: not paired: corpus_ppl: chipalign 0.4 was scored with other limits" in row
    beats = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"]
    assert "domain bpb not measured (not paired)" in beats[2] and "IFEval instr. +0.500" in beats[2]
    # IFEval resolves ChipAlign's way, but "domain kept" is not measured: no verdict of the claim
    assert beats[3] == NOT_MEASURED and "domain bpb: not paired: corpus_ppl:" in beats[4]
    assert {r[0]: r for r in merge_rows(facts)}["ChipAlign restores instruction following"][3] == REPRODUCES
