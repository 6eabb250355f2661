"""The merge section of REPORT.md on a fake reproduction folder: per-item records built by hand, results.json
summarised from them by the evaluation's own code, a ledger with the baselines' choice."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chipadapt.eval.intervals import mean_of_ratios
from chipadapt.eval.items import metric_fields, summarize
from chipadapt.reproduce.report import merge_section
from chipadapt.reproduce.report.context import Context, fmt
from chipadapt.reproduce.report.merge_verdicts import TRADE_OFF
from chipadapt.reproduce.report.power import NOT_MEASURED, NOT_RESOLVED, REPRODUCES
from chipadapt.reproduce.report.verdicts import merge_rows

PROMPTS = [f"p{i:02d}" for i in range(60)]
SCREEN = PROMPTS[:10]  # the screening's prompts: the first ten
SOURCES = {"openroad": 8, "ibex": 6}  # corpus sources and their documents


def write_items(folder: Path, task: str, items: list[dict]) -> dict:
    (folder / f"{task}_items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return summarize(items)


def ifeval_items(passing: set[str], ids: list[str]) -> list[dict]:
    return [
        {
            "id": i,
            "scores": {"prompt_loose": i in passing, "instruction_loose": {"num": int(i in passing), "den": 1}},
        }
        for i in ids
    ]


def corpus_items(bpb: float, pooled: bool = True) -> tuple[list[dict], dict]:
    """Held-out documents as corpus_ppl scores them: each domain document carries its source's bpb and,
    unless `pooled` is off (a run from before domain_all.bpb), the pooled `domain_all.bpb`; WikiText-2 apart."""
    items, groups = [], []
    for source, docs in SOURCES.items():
        group = []
        for k in range(docs):
            den = 100 + 10 * k
            score = {"num": (bpb + 0.01 * (k % 3)) * den, "den": den}
            scores = {f"{source}.bpb": score, **({"domain_all.bpb": score} if pooled else {})}
            group.append({"id": f"{source}/{k}", "split": source, "scores": scores})
        items += group
        groups.append(
            ([g["scores"][f"{source}.bpb"]["num"] for g in group], [g["scores"][f"{source}.bpb"]["den"] for g in group])
        )
    items += [
        {"id": f"general/{k}", "split": "general", "scores": {"general.bpb": {"num": 1.5 * 100, "den": 100}}}
        for k in range(3)
    ]
    return items, metric_fields("domain_mean.bpb", mean_of_ratios(groups))


def write_run(
    folder: Path,
    bpb: float,
    passing: set[str],
    ids: list[str],
    suite: bool = True,
    lam=None,
    method=None,
    pooled: bool = True,
):
    """A run folder: results.json from its items; a merge also gets its manifest, diagnostics and overrides."""
    folder.mkdir(parents=True)
    corpus, domain = corpus_items(bpb, pooled)
    results = {"corpus_ppl": {**write_items(folder, "corpus_ppl", corpus), **domain}}
    results["ifeval"] = {**write_items(folder, "ifeval", ifeval_items(passing, ids)), "prompts": len(ids)}
    if suite:
        good = bpb < 1.5  # the domain-leaning models write better scripts
        eda = [
            {"id": f"e{k}", "scores": {"syntax": True, "call_f1": 0.5 + 0.2 * good, "arg_f1": 0.3}} for k in range(8)
        ]
        results["eda_script"] = write_items(folder, "eda_script", eda)
        qa = [{"id": f"q{k}", "scores": {"rougeL_rag": 0.2 + 0.01 * k}} for k in range(6)]
        results["rag_qa"] = write_items(folder, "rag_qa", qa)
    (folder / "results.json").write_text(json.dumps(results))
    if method:
        (folder / "model").mkdir()
        (folder / "model" / "merge_manifest.json").write_text(json.dumps({"summary": {"method": method, "lam": lam}}))
        (folder / "model" / "merge_diagnostics.csv").write_text(
            f"tensor,lam,angle_deg,norm_chip,norm_instruct\na,{lam},1.0,1.0,1.0\nb,{lam},3.0,2.0,2.1\nc,{lam},,,\n"
        )
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(f"- merge={method}\n- merge.lam={lam}\n- eval=[corpus_ppl]\n")
    return results


def fake_out(tmp_path: Path, heldout_pass: bool, pooled: bool = True) -> Context:
    """Instruct model: every prompt, domain bpb 2.0; chip model: no prompt, bpb 1.0. ChipAlign 0.4 follows
    every screening prompt (and the held-out ones when `heldout_pass`), bpb 1.6: merge_balance
    (0.4 + 1) / 2 = 0.7 on the screening prompts; ChipAlign 0.6 half of them and every held-out one,
    bpb 1.4: (0.6 + 0.5) / 2 = 0.55. So 0.4 is chosen, on the screening prompts. Without `pooled`, the
    runs predate domain_all.bpb: domain_mean.bpb, the same figures here, stands in."""
    out = tmp_path / "out"
    heldout = set(PROMPTS[10:])
    write_run(out / "eval_base", 2.0, set(PROMPTS), PROMPTS, pooled=pooled)
    write_run(out / "eval_sft", 1.0, set(), PROMPTS, pooled=pooled)
    write_run(
        out / "merge_chipalign" / "0",
        1.6,
        set(SCREEN) | (heldout if heldout_pass else set()),
        PROMPTS,
        lam=0.4,
        method="chipalign",
        pooled=pooled,
    )
    chipalign_06 = set(SCREEN[:5]) | heldout
    write_run(out / "merge_chipalign" / "1", 1.4, chipalign_06, PROMPTS, lam=0.6, method="chipalign", pooled=pooled)
    for job, (bpb, passing, lam) in enumerate([(1.6, SCREEN[:6], 0.4), (1.2, SCREEN[:2], 0.8)]):
        folder = out / "screen_interp" / str(job)
        write_run(folder, bpb, set(passing), SCREEN, suite=False, lam=lam, method="linear", pooled=pooled)
    write_run(out / "merge_linear", 1.5, set(PROMPTS[10:35]), PROMPTS, lam=0.4, method="linear", pooled=pooled)
    done = ["eval_base", "eval_sft", "merge_chipalign", "screen_interp", "merge_linear"]
    ledger = {name: {"status": "completed"} for name in done}
    ledger["merge_linear"]["choice"] = {
        "overrides": ["merge.lam=0.4"],
        "winner": "screen_interp/0",
        "score": 0.5,
        "by": "merge_balance",
        "scores": {"screen_interp/0": 0.5, "screen_interp/1": 0.4},
    }
    steps = {name: SimpleNamespace(label=name, section="merge") for name in [*done, "screen_sparse", "merge_ties"]}
    return Context(out, tmp_path / "report", steps, ledger, Path("base"), Path("data"))


@pytest.fixture(scope="module")
def clear(tmp_path_factory):
    ctx = fake_out(tmp_path_factory.mktemp("clear"), heldout_pass=True)
    ctx.report_dir.mkdir()
    text, facts = merge_section.section(ctx)
    return ctx, text, facts


def line_of(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_lambda_table_has_every_model_with_its_intervals(clear):
    ctx, text, facts = clear
    results = json.loads((ctx.out / "merge_chipalign" / "1" / "results.json").read_text())
    row = line_of(text, "| [chipalign 0.6](runs/merge_chipalign/1) |")
    for task, metric in [("ifeval", "instruction_loose"), ("corpus_ppl", "domain_all.bpb"), ("eda_script", "call_f1")]:
        value, (lo, hi) = results[task][metric], results[task][f"{metric}_ci"]
        assert f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]" in row
    assert "| 0.917 [" in row  # IFEval instr.: 5 + 50 of 60 prompts
    assert line_of(text, "| [chipalign 0.4](runs/merge_chipalign/0) |").endswith("| 0.700 (chosen) |")
    assert line_of(text, "| [instruct model (lambda 0)](runs/eval_base) |").endswith("| 0.500 |")
    assert "| [linear](runs/merge_linear) | merge.lam=0.4 |" in text
    assert "mean 2.00 degrees, max 3.00" in text
    geometry = facts["geometry"]  # test_merge_geometry checks the figures; here, that the section reads them
    assert geometry["lam"] == 0.4 and geometry["jobs"] == 2 and 0 < geometry["slerp"] < geometry["chipalign"] < 0.01
    assert f"at lambda 0.4, ChipAlign's merge lies {100 * geometry['chipalign']:.3g}% of the chip-instruct" in text
    assert "(50% of the tensors are within slerp's parallel threshold" in text
    # merge_slerp is not a step of this fake variant: the text says why its figures would repeat linear's
    assert f"its merge lies within {100 * geometry['max']['slerp']:.2g}% of the chip-instruct distance" in text


def test_screening_table_marks_the_chosen_setting_with_the_ledger_score(clear):
    _, text, _ = clear
    assert line_of(text, "| linear | 0.4 |").endswith(
        "| 0.500 | **chosen** | [screen_interp/0](runs/screen_interp/0) |"
    )
    assert line_of(text, "| linear | 0.8 |").endswith("| 0.400 |  | [screen_interp/1](runs/screen_interp/1) |")
    assert "_Screening `screen_sparse`: not in this run" in text


def test_chipalign_lambda_is_chosen_by_merge_balance_on_the_screening_prompts(clear):
    _, text, facts = clear
    assert facts["best"]["lam"] == 0.4 and facts["scores"] == pytest.approx({0.4: 0.7, 0.6: 0.55})
    assert "the same 10 IFEval prompts the baselines' screening scored" in text


def test_paired_tests_leave_out_the_screening_prompts(clear):
    _, text, facts = clear
    assert facts["heldout_prompts"] == 50
    for other in ("chip model", "instruct model", "linear"):
        assert facts["tests"][other]["ifeval.prompt_loose"].n == 50
        assert facts["tests"][other]["ifeval.instruction_loose"].n == 50
    vs_linear = facts["tests"]["linear"]["ifeval.instruction_loose"]
    assert vs_linear.a == pytest.approx(25 / 50) and vs_linear.b == 1.0  # linear's held-out share, not 25/60
    domain = facts["tests"]["chip model"]["corpus_ppl.domain_all.bpb"]
    assert domain.diff == pytest.approx(0.6) and domain.n == sum(SOURCES.values())  # general split left out
    assert domain.test == "paired-permutation-exact"  # every domain document pooled, not stratified by source
    assert "every held-out domain document pooled, by the paired permutation test over documents" in text
    assert "predate" not in text
    assert "IFEval on the 50 prompts that chose nothing" in text
    assert "| chipalign 0.4 − chip model | IFEval prompt (loose) | 0.000 | 1.000 | +1.000 |" in text


def test_a_clear_difference_reproduces(clear):
    _, _, facts = clear
    rows = {row[0]: row for row in merge_rows(facts)}
    restores = rows["ChipAlign restores instruction following"]
    assert restores[3] == REPRODUCES and "difference +1.000" in restores[2] and "n = 50" in restores[2]
    # ChipAlign 0.4 against linear: more held-out prompts followed, but domain bpb 1.6 against 1.5; the
    # criterion that chose both settings weighs the two and favours ChipAlign
    vs_linear = rows["ChipAlign beats the other merges: vs linear"]
    assert vs_linear[3:] == [REPRODUCES, f"{TRADE_OFF}; merge_balance, which chose every setting, favours ChipAlign's"]
    assert facts["balances"]["linear"].diff > 0 and "merge_balance +" in vs_linear[2]
    # 0.6 follows every held-out prompt, as the chosen 0.4 does, and has the lower domain bpb
    best06 = rows["Best ChipAlign lambda is 0.6"]
    assert best06[3] == REPRODUCES and "0.6 does better than the 0.4 the screening chose" in best06[4]
    assert "lambda 0.4 chosen by merge_balance on 10 screening prompts (score 0.70; next best 0.6 at 0.55)" in best06[2]


def test_a_null_difference_is_not_resolved_and_screening_prompts_do_not_count(tmp_path):
    # ChipAlign 0.4 follows the ten screening prompts only: counted, they would make it beat the chip model.
    ctx = fake_out(tmp_path, heldout_pass=False)
    ctx.report_dir.mkdir()
    _, facts = merge_section.section(ctx)
    rows = {row[0]: row for row in merge_rows(facts)}
    restores = rows["ChipAlign restores instruction following"]
    assert restores[3] == NOT_RESOLVED and restores[4] == "no difference at all over 50 prompts"


def test_plots_are_written_beside_the_report(clear):
    ctx, text, _ = clear
    for name in ("merge_balance.png", "merge_lambda.png"):
        assert (ctx.report_dir / name).stat().st_size > 10_000 and f"![{name}]({name})" in text


def test_missing_steps_leave_notes_not_exceptions(tmp_path):
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    ctx.ledger["eval_sft"]["status"] = "failed"  # no chip model: no lambda can be chosen, nothing to pair
    text, facts = merge_section.section(ctx)
    assert merge_rows(facts)[0][3:] == [NOT_MEASURED, "no lambda could be chosen: an end of the sweep is missing"]
    assert "[chipalign 0.4](runs/merge_chipalign/0)" in text
    for name in list(ctx.ledger):
        ctx.ledger[name]["status"] = "failed"
    text, facts = merge_section.section(ctx)
    assert text.startswith("_Merge study: not in this run") and facts == {}
    assert merge_rows(facts)[0][3] == NOT_MEASURED


def test_one_lambda_only_says_the_sweep_was_not_run(tmp_path):
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    (ctx.out / "merge_chipalign" / "1" / "results.json").unlink()  # as the fast variant: one lambda
    text, facts = merge_section.section(ctx)
    best06 = {row[0]: row for row in merge_rows(facts)}["Best ChipAlign lambda is 0.6"]
    assert best06[3] == NOT_MEASURED and best06[2] == "merged at lambda 0.4 only"


def test_runs_from_before_domain_bpb_fall_back_to_the_mean_of_sources_and_say_so(tmp_path):
    ctx = fake_out(tmp_path, heldout_pass=True, pooled=False)
    ctx.report_dir.mkdir()
    text, facts = merge_section.section(ctx)
    assert "predate corpus_ppl's pooled `domain_all.bpb`" in text and facts["domain_fallback"]
    assert "Domain bpb: domain_mean.bpb where a run predates domain_all.bpb" in text
    # merge_balance still chooses, on domain_mean.bpb for the run and both ends
    assert facts["best"]["lam"] == 0.4 and facts["scores"] == pytest.approx({0.4: 0.7, 0.6: 0.55})
    domain = facts["tests"]["chip model"]["corpus_ppl.domain_all.bpb"]
    assert domain.diff == pytest.approx(0.6) and domain.test == "paired-permutation-exact (stratified by group)"
    results = json.loads((ctx.out / "merge_chipalign" / "1" / "results.json").read_text())["corpus_ppl"]
    assert "domain_all.bpb" not in results
    row = line_of(text, "| [chipalign 0.6](runs/merge_chipalign/1) |")
    assert f"{fmt(results['domain_mean.bpb'])} [{fmt(results['domain_mean.bpb_ci'][0])}, " in row
    beats = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"]
    assert "domain bpb (mean of sources: runs from before domain_all.bpb) +0.100" in beats[2]


def test_without_screening_every_prompt_chooses_and_the_text_says_so(tmp_path):
    # The full variant's merge sweep has finished but its screening steps have not (yet).
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    for name in ("screen_interp", "merge_linear"):
        ctx.ledger[name]["status"] = "failed"
    text, facts = merge_section.section(ctx)
    assert "No screening step has finished in this run." in text
    assert f"IFEval on all {len(PROMPTS)} prompts (no screening step in this run)" in text
    assert "0 screening prompts" not in text and "first 0 IFEval" not in text
    best06 = {row[0]: row for row in merge_rows(facts)}["Best ChipAlign lambda is 0.6"]
    assert "chosen by merge_balance on all IFEval prompts" in best06[2] and "the items that chose it" in best06[2]
    assert "the prompts tested are the ones that chose the lambda" in best06[4]
    restores = {row[0]: row for row in merge_rows(facts)}["ChipAlign restores instruction following"]
    assert "prompts (selection's included)" in restores[2] and "held-out" not in restores[2]


def test_a_baseline_at_another_lambda_is_also_compared_with_chipalign_at_its_own(tmp_path):
    # Linear chose 0.6 where ChipAlign chose 0.4: best against best then compares lambdas too, so the
    # sweep's ChipAlign 0.6 is set against linear 0.6 (the methods alone).
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    manifest = ctx.out / "merge_linear" / "model" / "merge_manifest.json"
    manifest.write_text(json.dumps({"summary": {"method": "linear", "lam": 0.6}}))
    ctx.ledger["merge_linear"]["choice"]["overrides"] = ["merge.lam=0.6"]
    text, facts = merge_section.section(ctx)
    twin = facts["same_lambda"]["linear"]
    assert twin["lam"] == 0.6 and twin["ifeval.instruction_loose"].n == 50  # the held-out prompts only
    assert twin["ifeval.instruction_loose"].a == pytest.approx(25 / 50) and twin["ifeval.instruction_loose"].b == 1.0
    assert twin["corpus_ppl.domain_all.bpb"].diff == pytest.approx(-0.1)  # ChipAlign 0.6 1.4, linear 1.5
    assert "| chipalign 0.6 − linear 0.6 | IFEval instr. (loose) | 0.500 | 1.000 | +0.500 |" in text
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"]
    assert "at linear's lambda 0.6: IFEval instr. +0.500" in row[2]
    # best against best is a trade-off (0.4 follows more prompts, 0.6's bpb is lower), which merge_balance
    # settles for ChipAlign; at 0.6 ChipAlign wins both, which agrees and adds no note
    assert (
        row[3] == REPRODUCES and row[4] == f"{TRADE_OFF}; merge_balance, which chose every setting, favours ChipAlign's"
    )


def test_the_same_lambda_comparison_is_left_out_when_the_lambdas_agree(clear):
    _, text, facts = clear
    assert facts["same_lambda"] == {} and "compares the methods alone" not in text
