"""The full variant's split ChipAlign sweep in the merge section: every lambda on domain bpb and IFEval,
EDA scripts and domain QA at the chosen lambda (merge_chipalign_best), joined only where the report
chooses the same lambda."""

import json
from types import SimpleNamespace

import pytest
from test_merge_report import fake_out, line_of, write_items

from chipadapt.reproduce.report import merge_section


def test_a_sweep_on_part_of_the_suite_takes_the_rest_from_the_chosen_lambdas_run(tmp_path):
    # The full variant: every lambda on domain bpb and IFEval only, EDA and QA at the chosen one
    # (merge_chipalign_best); the lambda table and the paired tests read those from there.
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    for job in ("0", "1"):  # the sweep without the generation tasks
        folder = ctx.out / "merge_chipalign" / job
        results = json.loads((folder / "results.json").read_text())
        (folder / "results.json").write_text(json.dumps({k: results[k] for k in ("corpus_ppl", "ifeval")}))
        for task in ("eda_script", "rag_qa"):
            (folder / f"{task}_items.jsonl").unlink()
    rest = ctx.out / "merge_chipalign_best"
    rest.mkdir()
    eda = [{"id": f"e{k}", "scores": {"syntax": True, "call_f1": 0.9, "arg_f1": 0.3}} for k in range(8)]
    qa = [{"id": f"q{k}", "scores": {"rougeL_rag": 0.3 + 0.01 * k}} for k in range(6)]
    (rest / "results.json").write_text(
        json.dumps({"eda_script": write_items(rest, "eda_script", eda), "rag_qa": write_items(rest, "rag_qa", qa)})
    )
    (rest / "model").mkdir()
    (rest / "model" / "merge_manifest.json").write_text(json.dumps({"summary": {"method": "chipalign", "lam": 0.4}}))
    ctx.ledger["merge_chipalign_best"] = {"status": "completed"}
    ctx.steps["merge_chipalign_best"] = SimpleNamespace(label="merge_chipalign_best", section="merge")
    text, facts = merge_section.section(ctx)
    assert facts["best"]["lam"] == 0.4
    chosen = line_of(text, "| [chipalign 0.4](runs/merge_chipalign/0) |")
    assert "| 0.900 [" in chosen and chosen.endswith("| 0.700 (chosen) |")  # EDA call F1 from the rest's run
    other = line_of(text, "| [chipalign 0.6](runs/merge_chipalign/1) |").split(" | ")
    assert other[5:9] == ["–", "–", "–", "–"]  # no EDA or QA at the lambdas not chosen
    assert "the rest of the suite ran at the lambda it chose, 0.4 ([merge_chipalign_best]" in text
    vs_linear = facts["tests"]["linear"]["eda_script.call_f1"]
    assert (
        vs_linear.b == pytest.approx(0.9) and vs_linear.diff == pytest.approx(0.4) and vs_linear.n == 8
    )  # linear: 0.5
    assert facts["tests"]["chip model"]["ifeval.prompt_loose"].n == 50  # IFEval still from the sweep's job


def test_a_rest_run_at_a_lambda_the_sweep_no_longer_chooses_is_left_out_and_called_out_of_date(tmp_path):
    ctx = fake_out(tmp_path, heldout_pass=True)
    ctx.report_dir.mkdir()
    rest = ctx.out / "merge_chipalign_best"
    rest.mkdir()
    eda = [{"id": f"e{k}", "scores": {"syntax": True, "call_f1": 0.9, "arg_f1": 0.3}} for k in range(8)]
    (rest / "results.json").write_text(json.dumps({"eda_script": write_items(rest, "eda_script", eda)}))
    (rest / "model").mkdir()  # run at 0.6, but the sweep chooses 0.4 (a sweep rerun since, say)
    (rest / "model" / "merge_manifest.json").write_text(json.dumps({"summary": {"method": "chipalign", "lam": 0.6}}))
    ctx.ledger["merge_chipalign_best"] = {"status": "completed"}
    ctx.steps["merge_chipalign_best"] = SimpleNamespace(label="merge_chipalign_best", section="merge")
    text, facts = merge_section.section(ctx)
    assert facts["best"]["lam"] == 0.4
    assert "is out of date**: it ran the rest of the suite at lambda 0.6, but the sweep now chooses 0.4" in text
    assert "| 0.900 [" not in text  # its EDA figures are on no row
    assert facts["tests"]["linear"]["eda_script.call_f1"].b == pytest.approx(0.5)  # the sweep's own job, not 0.9
