"""The report's verdict rule: a difference counts only when its paired interval excludes zero; otherwise
"not resolved at this size", with the size that would resolve it (reproduce/report/power.py)."""

import math

import pytest

from chipadapt.eval.paired import mcnemar, paired_difference
from chipadapt.reproduce.report.power import CONTRADICTS, NOT_MEASURED, NOT_RESOLVED, REPRODUCES


def test_a_difference_counts_only_when_its_paired_interval_excludes_zero():
    """Replaces test_reproduce.py's rule of twice the binomial standard error."""
    from chipadapt.reproduce.report.power import verdict as judge

    before = [True] * 100
    clearly_worse = [k >= 60 for k in range(100)]  # 60 of 100 prompts lost
    assert judge(mcnemar(before, clearly_worse), -1, "prompts")[0] == REPRODUCES
    assert judge(mcnemar(before, clearly_worse), +1, "prompts")[0] == CONTRADICTS
    # 3 lost, 2 gained: an interval around 0, and the size that would resolve a 1-point difference
    a = [k >= 3 for k in range(100)]
    b = [k not in (5, 6) for k in range(100)]
    d = mcnemar(a, b)
    verdict, why = judge(d, -1, "prompts")
    assert verdict.startswith(f"{NOT_RESOLVED}, needs about ") and verdict.endswith(" prompts")
    needed = int(verdict.split("needs about ")[1].split()[0].replace(",", ""))
    assert needed > 1000 and "covers 0" in why  # a 1% difference needs thousands of prompts
    assert judge(None, -1, "prompts")[0] == NOT_MEASURED


def test_one_discordant_prompt_of_eight_is_not_resolved_by_nine():
    # The fast variant's case: one prompt lost of 8 (Tango's interval [-0.471, +0.240]). It takes six
    # discordant prompts at the least, so about 48 prompts at this rate.
    from chipadapt.reproduce.report.power import verdict as judge

    d = mcnemar([k == 0 for k in range(8)], [False] * 8)
    assert d.discordant == 1 and d.ci == pytest.approx((-0.4709, 0.2400), abs=1e-4)
    assert judge(d, -1, "prompts")[0] == f"{NOT_RESOLVED}, needs about 48 prompts"
    # Four of four prompts lost: Tango's interval leaves 0 out, but four discordant prompts decide
    # nothing (the exact test's p, which the row gives, is 0.125).
    four = mcnemar([True] * 4 + [False] * 4, [False] * 8)
    assert four.ci[1] < 0 and four.p == pytest.approx(0.125)
    cell, why = judge(four, -1, "prompts")
    assert cell == f"{NOT_RESOLVED}, needs about 12 prompts" and "only 4 of 8 prompts tell the two apart" in why


def test_a_handful_of_items_resolves_nothing_whatever_its_differences():
    from chipadapt.reproduce.report.power import MIN_RESAMPLED, verdict

    a = {f"d{k}": {"scores": {"bpb": {"num": 10.0, "den": 10}}} for k in range(3)}
    b = {f"d{k}": {"scores": {"bpb": {"num": 5.0, "den": 10}}} for k in range(3)}
    d = paired_difference(a, b, "bpb")
    # Three documents all one way: the exact test's p is 2/8, and no shift is rejected (the bootstrap
    # gave a zero-width "interval" here).
    assert d.test == "paired-permutation-exact" and d.p == 0.25 and d.ci == (-math.inf, math.inf)
    assert verdict(d, -1, "documents")[0] == f"{NOT_RESOLVED}, needs at least 6 documents"
    assert verdict(d, -1, "documents", 250.0)[0] == f"{NOT_RESOLVED}, needs at least 6 documents / 1,500 tokens"
    # McNemar's test needs no resampling: seven of eight prompts lost resolves (p = 0.008)
    assert verdict(mcnemar([True] * 8, [False] * 7 + [True]), -1, "prompts")[0] == REPRODUCES
    many = {f"d{k}": {"scores": {"bpb": {"num": 10.0, "den": 10}}} for k in range(MIN_RESAMPLED)}
    fewer = {i: {"scores": {"bpb": {"num": 5.0, "den": 10}}} for i in many}
    assert verdict(paired_difference(many, fewer, "bpb"), -1, "documents")[0] == REPRODUCES
