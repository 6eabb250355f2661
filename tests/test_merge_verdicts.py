"""The merge study's verdict rows (merge_verdicts, through verdicts.merge_rows) and the merge_balance
difference of the lambda-0.6 test, on paired differences built by hand: the rows' wording and which
verdict each combination of intervals gets."""

import pytest

from chipadapt.eval.paired import PairedDifference
from chipadapt.reproduce.report.merge_tests import balance_difference
from chipadapt.reproduce.report.merge_verdicts import TRADE_OFF
from chipadapt.reproduce.report.power import CONTRADICTS, NOT_MEASURED, NOT_RESOLVED, REPRODUCES
from chipadapt.reproduce.report.verdicts import merge_rows


def test_balance_difference_is_merge_balance_of_each_side():
    # ends (IFEval, bpb): instruct (1.0, 2.0), chip (0.0, 1.0); a: 0.5 and 1.5 -> 0.5; b: 0.7 and 1.4 -> 0.65
    ifeval = PairedDifference(0.5, 0.7, 0.2, (0.1, 0.3), 0.01, 50, "paired-bootstrap")
    domain = PairedDifference(1.5, 1.4, -0.1, (-0.15, -0.05), 0.01, 14, "paired-bootstrap")
    d = balance_difference(ifeval, domain, (1.0, 2.0), (0.0, 1.0))
    assert (d.a, d.b, d.n) == (pytest.approx(0.5), pytest.approx(0.65), 50)
    # half-widths 0.1 and 0.05, each weighted 0.5, in quadrature
    assert d.ci[1] - d.diff == pytest.approx(0.5 * (0.1**2 + 0.05**2) ** 0.5)
    # ends that tie on IFEval leave it out, as merge_balance does
    assert balance_difference(ifeval, domain, (0.0, 2.0), (0.0, 1.0)).diff == pytest.approx(0.05)
    # the IFEval share scaled as merge_balance scales it (the ends' gap over all their prompts, here 0.5):
    # a: 0.5 / 0.5 and 0.5 -> 0.75; b: 0.7 / 0.5 and 0.6 -> 1.0
    scaled = balance_difference(ifeval, domain, (1.0, 2.0), (0.0, 1.0), ifeval_scale=0.5)
    assert (scaled.a, scaled.b) == (pytest.approx(0.75), pytest.approx(1.0))


def screened_facts(best: float, scores: dict[float, float], **rest) -> dict:
    """merge_section's facts for a sweep chosen on 100 screening prompts and tested on the other 441."""
    facts = {"lams": sorted(scores), "best": {"lam": best, "score": scores[best]}, "scores": scores, "tests": {}}
    return {**facts, "selection_prompts": 100, "heldout_prompts": 441, **rest}


def test_paper_lambda_chosen_but_within_noise_of_the_runner_up_is_not_resolved():
    noisy = PairedDifference(0.50, 0.52, 0.02, (-0.05, 0.09), 0.6, 100, "normal, from the two paired tests")
    lambda_test = {"rival": 0.5, "ifeval.instruction_loose": None, "corpus_ppl.domain_all.bpb": None, "balance": noisy}
    facts = screened_facts(0.6, {0.5: 0.58, 0.6: 0.61}, lambda_test=lambda_test)
    row = {r[0]: r for r in merge_rows(facts)}["Best ChipAlign lambda is 0.6"]
    assert row[3].startswith(f"{NOT_RESOLVED}, needs about ") and row[3].endswith(" prompts")
    assert row[4] == "0.6 is within noise of 0.5: the 95% interval covers 0: a difference of +0.02 over 100 prompts"
    assert "(score 0.61; next best 0.5 at 0.58)" in row[2] and "merge_balance +0.020 [-0.050, +0.090]" in row[2]
    resolved = PairedDifference(0.50, 0.60, 0.10, (0.03, 0.17), 0.004, 100, "normal, from the two paired tests")
    facts["lambda_test"]["balance"] = resolved
    assert {r[0]: r for r in merge_rows(facts)}["Best ChipAlign lambda is 0.6"][3:] == [REPRODUCES, ""]


def test_a_merge_row_resting_on_a_handful_of_documents_is_not_resolved_and_says_what_would_resolve_it():
    # The smoke run's case: a tiny domain-bpb difference, the same on each of six documents, gives a
    # zero-width bootstrap "interval" that would otherwise count as resolved.
    ifeval = PairedDifference(0.50, 0.52, 0.02, (-0.03, 0.07), 0.4, 50, "paired-bootstrap")
    domain = PairedDifference(1.5, 1.5 - 1.6e-7, -1.6e-7, (-1.6e-7, -1.6e-7), 0.001, 6, "paired-bootstrap")
    facts = {
        "lams": [0.5],
        "best": {"lam": 0.5, "score": None},
        "tests": {"linear": {"ifeval.instruction_loose": ifeval, "corpus_ppl.domain_all.bpb": domain}},
    }
    cell = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"][3]
    assert cell.startswith(f"{NOT_RESOLVED}, needs about ")
    assert cell.endswith(" prompts (IFEval) or at least 10 documents (domain bpb)")
    # With enough documents the same constant difference resolves, in the paper's direction; but a
    # domain-only win does not make ChipAlign the better merge: IFEval decides, and says what it needs.
    facts["tests"]["linear"]["corpus_ppl.domain_all.bpb"] = PairedDifference(
        1.5, 1.5 - 1.6e-7, -1.6e-7, (-1.6e-7, -1.6e-7), 0.001, 70, "paired-bootstrap"
    )
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"]
    assert row[3].startswith(f"{NOT_RESOLVED}, needs about ") and row[3].endswith(" prompts (IFEval)")
    assert row[4].startswith("better on domain bpb only")
    # IFEval resolved ChipAlign's way with the domain not against it: reproduces; against it: contradicts.
    facts["tests"]["linear"]["ifeval.instruction_loose"] = PairedDifference(
        0.50, 0.58, 0.08, (0.03, 0.13), 0.001, 50, "paired-bootstrap"
    )
    assert {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"][3] == REPRODUCES
    facts["tests"]["linear"]["ifeval.instruction_loose"] = PairedDifference(
        0.58, 0.50, -0.08, (-0.13, -0.03), 0.001, 50, "paired-bootstrap"
    )
    assert {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"][3:] == [
        NOT_RESOLVED,
        TRADE_OFF,
    ]


@pytest.mark.parametrize(
    ("interval", "cell", "why"),
    [
        ((0.05, 0.15), REPRODUCES, f"{TRADE_OFF}; merge_balance, which chose every setting, favours ChipAlign's"),
        ((-0.15, -0.05), CONTRADICTS, f"{TRADE_OFF}; merge_balance, which chose every setting, favours the baseline's"),
        ((-0.05, 0.15), f"{NOT_RESOLVED}, needs about", f"{TRADE_OFF}; merge_balance: the 95% interval covers 0"),
    ],
)
def test_a_trade_off_between_the_measures_is_settled_by_merge_balance(interval, cell, why):
    # ChipAlign follows more prompts but its domain bpb is higher, each beyond noise
    ifeval = PairedDifference(0.30, 0.34, 0.04, (0.01, 0.07), 0.008, 441, "paired-bootstrap")
    domain = PairedDifference(0.85, 0.89, 0.04, (0.03, 0.05), 0.001, 70, "paired-bootstrap")
    balance = PairedDifference(0.5, 0.5 + sum(interval) / 2, sum(interval) / 2, interval, 0.01, 441, "normal")
    facts = screened_facts(
        0.4,
        {0.4: 0.7},
        tests={"della": {"ifeval.instruction_loose": ifeval, "corpus_ppl.domain_all.bpb": domain}},
        balances={"della": balance},
    )
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs della"]
    assert row[3].startswith(cell) and row[4].startswith(why)
    assert f"merge_balance {sum(interval) / 2:+.3f}" in row[2]
    # without the ends' records there is no balance to settle it: the trade-off stays unresolved
    del facts["balances"]
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs della"]
    assert row[3:] == [NOT_RESOLVED, TRADE_OFF] and "merge_balance" not in row[2]


def test_a_win_that_vanishes_at_the_same_lambda_is_not_credited_to_the_method():
    win = PairedDifference(0.50, 0.58, 0.08, (0.03, 0.13), 0.001, 441, "paired-bootstrap")
    level = PairedDifference(1.00, 1.00, 0.0, (-0.01, 0.01), 1.0, 70, "paired-bootstrap")
    tie = PairedDifference(0.55, 0.56, 0.01, (-0.02, 0.04), 0.5, 441, "paired-bootstrap")
    facts = screened_facts(
        0.4,
        {0.4: 0.7, 0.6: 0.6},
        tests={"linear": {"ifeval.instruction_loose": win, "corpus_ppl.domain_all.bpb": level}},
        same_lambda={"linear": {"lam": 0.6, "ifeval.instruction_loose": tie, "corpus_ppl.domain_all.bpb": level}},
    )
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"]
    assert row[3] == REPRODUCES
    assert row[4] == "at linear's lambda 0.6 the two merges are within noise, so the difference cannot be " + (
        "credited to the method"
    )
    # a same-lambda pair that resolves both ways, opposite directions, is a trade-off, not noise
    better_domain = PairedDifference(1.00, 0.95, -0.05, (-0.07, -0.03), 0.001, 70, "paired-bootstrap")
    worse_ifeval = PairedDifference(0.55, 0.50, -0.05, (-0.08, -0.02), 0.001, 441, "paired-bootstrap")
    facts["same_lambda"]["linear"].update(
        {"ifeval.instruction_loose": worse_ifeval, "corpus_ppl.domain_all.bpb": better_domain}
    )
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign beats the other merges: vs linear"]
    assert row[4] == "at linear's lambda 0.6 the two merges trade one measure for the other, each beyond noise"


def test_the_merge_keeps_domain_ability_only_when_no_domain_measure_is_worse():
    def d(diff: float, ci: tuple[float, float], n: int) -> PairedDifference:
        return PairedDifference(0.5, 0.5 + diff, diff, ci, 0.01, n, "paired-bootstrap")

    chip = {
        "corpus_ppl.domain_all.bpb": d(0.043, (0.019, 0.073), 70),  # higher bpb: worse
        "eda_script.call_f1": d(-0.056, (-0.080, -0.034), 63),  # worse
        "rag_qa.rougeL_rag": d(0.064, (0.045, 0.085), 100),  # better
    }
    facts = screened_facts(0.4, {0.4: 0.7}, tests={"chip model": chip})
    row = {r[0]: r for r in merge_rows(facts)}["ChipAlign keeps the chip model's domain ability"]
    assert row[3] == CONTRADICTS
    assert row[4] == "worse on domain bpb and EDA call F1, beyond noise; better on QA ROUGE-L (RAG)"
    assert "ChipAlign 0.4 minus the chip model: domain bpb +0.043 [+0.019, +0.073]" in row[2]
    chip["corpus_ppl.domain_all.bpb"] = d(-0.01, (-0.03, -0.002), 70)
    chip["eda_script.call_f1"] = d(0.0, (-0.02, 0.02), 63)
    assert {r[0]: r for r in merge_rows(facts)}["ChipAlign keeps the chip model's domain ability"][3] == REPRODUCES
    chip["corpus_ppl.domain_all.bpb"] = d(0.01, (-0.01, 0.03), 70)
    chip["rag_qa.rougeL_rag"] = d(0.0, (-0.02, 0.02), 100)
    cell = {r[0]: r for r in merge_rows(facts)}["ChipAlign keeps the chip model's domain ability"][3]
    assert cell.startswith(f"{NOT_RESOLVED}, needs about ")
    del facts["tests"]["chip model"]
    assert {r[0]: r for r in merge_rows(facts)}["ChipAlign keeps the chip model's domain ability"][3] == NOT_MEASURED
