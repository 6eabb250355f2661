"""One rule for small samples across single-run intervals, paired tests and the attribute model's figures
(eval/intervals.py, eval/paired.py): the sign-flip test inverted, none under 6 draws, the exact binomial for
constant [0, 1] scores, the random sign-flip test above 16 paired items, and mixed score forms refused."""

import math

import numpy as np
import pytest

from chipadapt.eval.intervals import clopper_pearson, ratio


def test_a_ratio_over_four_documents_has_no_interval_and_a_table_says_why():
    from chipadapt.eval.items import metric_fields
    from chipadapt.report import with_interval

    est = ratio([9.1, 10.4, 8.7, 11.0], [2.0, 2.2, 1.9, 2.4])  # 4 documents' bits over bytes
    assert est.ci == (-math.inf, math.inf) and est.method.startswith("interval n/a: n=4, too few")
    assert est.stderr is not None and est.stderr > 0  # the standard error is still a figure
    fields = metric_fields("domain.bpb", est)
    fields["domain.bpb_ci"] = [None, None]  # as results.json (strict JSON) carries an unbounded end
    assert with_interval(fields, "domain.bpb", 4) == f"{est.value:.4f} (interval n/a: n=4, too few)"


def test_six_items_or_more_get_the_sign_flip_interval():
    scores = [0.1, 0.3, 0.05, 0.6, 0.2, 0.15]
    est = ratio(scores)
    assert est.method == "sign-flip test inverted (mean, every sign flip over items)"
    # 6 items: the second-smallest and second-largest of the 64 flips' roots bound it (2 / 64 < 0.05)
    assert est.ci[0] < np.mean(scores) < est.ci[1] and np.isfinite(est.ci).all()
    many = ratio(list(np.random.default_rng(0).beta(1, 4, 40)))
    assert many.method == "sign-flip test inverted (mean, 2000 random sign flips over items)"


def test_the_ratio_interval_holds_its_95_percent_at_8_documents():
    rng, covered, trials = np.random.default_rng(8), 0, 300
    for t in range(trials):
        den = rng.lognormal(8, 1, 8)
        est = ratio(list(den * rng.normal(1.2, 0.25, 8)), list(den), seed=t)
        covered += est.ci[0] <= 1.2 <= est.ci[1]
    assert covered / trials >= 0.92  # the percentile bootstrap covered 85.6% here


def test_a_constant_sample_gets_no_zero_width_interval():
    half = ratio([0.5] * 6)
    assert half.ci == pytest.approx(clopper_pearson(3, 6)) and half.ci[1] - half.ci[0] > 0.5
    assert ratio([0.5] * 3).ci == (-math.inf, math.inf)  # under 6 items none, as for any mean: not [0.5, 0.5]
    one_of_two = ratio([1] * 20, [2] * 20)  # IFEval instruction-level: every prompt follows 1 of its 2
    assert one_of_two.ci == pytest.approx(clopper_pearson(10, 20)) and one_of_two.ci[0] < 0.3
    assert "every item at the rate 0.5" in one_of_two.method
    bits = ratio([12.0] * 7, [10.0] * 7)  # not a [0, 1] score: no interval rather than a point
    assert bits.ci == (-math.inf, math.inf) and bits.method.startswith("interval n/a:")
    single = ratio([10.0], [7.0])
    assert single.ci == (-math.inf, math.inf) and "bootstrap" not in single.method


def test_a_few_items_that_differ_among_many_stay_within_noise():
    from chipadapt.eval.paired import paired_bootstrap

    rng = np.random.default_rng(0)
    for n in (17, 50, 541):
        a = rng.random(n)
        b = a.copy()
        b[:4] += 0.3  # ROUGE: 4 items gain, the rest tied; no sign-flip over 4 goes below 2 / 16
        d = paired_bootstrap(a, np.ones(n), b, np.ones(n))
        assert d.test == "paired-permutation-random" and d.verdict == "within noise", n
        assert d.p >= 0.1 and d.ci[0] <= 0 <= d.ci[1]
    # IFEval instruction-level: 541 prompts of 2 instructions, 4 gain one
    a_num = np.minimum(rng.integers(0, 3, 541), 2).astype(float)
    b_num = a_num.copy()
    b_num[np.flatnonzero(a_num < 2)[:4]] += 1
    d = paired_bootstrap(a_num, np.full(541, 2.0), b_num, np.full(541, 2.0))
    assert d.verdict == "within noise" and d.p >= 0.1


def test_a_real_difference_over_many_items_is_still_found_and_p_agrees_with_the_interval():
    from chipadapt.eval.paired import paired_bootstrap

    rng = np.random.default_rng(1)
    a = rng.random(2000)
    b = a + rng.normal(0.02, 0.1, 2000)
    d = paired_bootstrap(a, np.ones(2000), b, np.ones(2000))
    assert d.verdict == "higher" and d.p < 0.05 and 0 < d.ci[0] < d.diff < d.ci[1]


def test_one_metric_in_two_forms_is_refused_not_paired():
    from chipadapt.eval.paired import ScoresDiffer, paired_difference

    ratio_form = {f"d{i}": {"scores": {"x.bpb": {"num": 900.0 + 40 * i, "den": 1000.0}}} for i in range(20)}
    numbers = {f"d{i}": {"scores": {"x.bpb": 1.2 + 0.01 * i}} for i in range(20)}
    with pytest.raises(ScoresDiffer, match="other forms"):
        paired_difference(ratio_form, numbers, "x.bpb")
    mixed = dict(ratio_form) | {"d0": {"scores": {"x.bpb": 0.9}}}
    with pytest.raises(ScoresDiffer, match="mix"):
        paired_difference(mixed, ratio_form, "x.bpb")


def test_grouped_attribute_figures_over_three_groups_give_no_interval():
    from chipadapt.modules.attribute_figures import attribute_figures

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 40).astype(float)
    groups = np.repeat(["t1", "t2", "t3"], [14, 13, 13])
    figures = attribute_figures(y + rng.normal(0, 1, 40), y, 2.0, groups)
    assert figures["mae_ci"] is None and figures["mae_n"] == 3
    assert figures["mae_ci_method"].startswith("interval n/a: n=3 groups of the 40 items, too few")
    assert figures["spearman_ci"] is None and figures["spearman_ci_method"].startswith("interval n/a: n=3 groups")
    many = np.repeat([f"t{g}" for g in range(8)], 5)
    wide = attribute_figures(y + rng.normal(0, 1, 40), y, 2.0, many)
    assert wide["mae_ci"][0] < wide["mae"] < wide["mae_ci"][1] and "8 groups of the 40 items" in wide["mae_ci_method"]


def test_another_data_file_is_refused_as_other_items():
    from chipadapt.eval.same_items import NotSameItems, same_settings

    with pytest.raises(NotSameItems, match="other data files") as err:
        same_settings("mcq", "B", "A", {"path": "data/mcqX.jsonl"}, {"path": "data/mcqY.jsonl"})
    assert "the same items another way" not in str(err.value)
