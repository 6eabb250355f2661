"""A training run's split interval over a few groups holds its 95%: items held out by whole groups (an SFT
run's threads by OASST tree) are k draws, and on this file's 1000 simulated validations per k the
percentile bootstrap over the k group sums covered 84% at k=6 and 87% at k=8. The sign-flip test over the
groups, inverted (eval/paired_groups.py), is what modules/val_figures.py gives now (96% and 95% here); the
paired change over more than 16 groups is the same test over random swaps."""

import math

import numpy as np
import pytest

from chipadapt.eval.paired import by_groups
from chipadapt.eval.paired_groups import exact_permutation, random_permutation, ratio_interval, ratio_over_groups
from chipadapt.modules.val_figures import split_figures

PER_GROUP, RATE = 5, 2.0  # items per group; nats per token the model has in truth


def _validation(rng: np.random.Generator, k: int) -> tuple[np.ndarray, list[str], float]:
    """An item table [item, nll, tokens, bytes] of k groups of PER_GROUP items whose loss per token shares
    a shift per group (a tree's threads share their first turns), its groups, and the true bits per byte."""
    n = k * PER_GROUP
    tokens = rng.uniform(80, 120, n)
    rate = RATE + np.repeat(rng.normal(0, 0.1, k), PER_GROUP) + rng.normal(0, 0.02, n)
    table = np.stack([np.arange(n), tokens * rate, tokens, 4 * tokens], axis=1)
    return table, [f"tree{i // PER_GROUP}" for i in range(n)], RATE / 4 / math.log(2)


@pytest.mark.parametrize("k", [6, 8])
def test_a_split_interval_over_few_groups_covers_the_truth_95_percent_of_the_time(k):
    rng, replicates, covered = np.random.default_rng(k), 1000, 0
    for _ in range(replicates):
        table, groups, truth = _validation(rng, k)
        figures = split_figures(table, groups)
        low, high = figures["bpb_ci"]
        covered += low <= truth <= high
        assert f"{k} groups of the {k * PER_GROUP} items" in figures["bpb_ci_method"]
    # 0.95 less about three standard errors of 1000 replicates; the bootstrap's 0.84 and 0.87 here fail it
    assert covered / replicates >= 0.93


def test_the_interval_is_the_exact_paired_test_s_for_a_mean_and_needs_six_groups():
    rng = np.random.default_rng(0)
    for k in (6, 9, 12):
        x, ones = rng.normal(0.1, 1, k), np.ones(k)
        # sign flips of x - r are the paired permutation test of b = x against a = 0, shifted by r
        assert ratio_interval(x, ones) == pytest.approx(exact_permutation([(0 * x, ones, x, ones)])[1])
    low, high = ratio_interval(rng.normal(0, 1, 5) + 2, np.ones(5))
    assert (low, high) == (-math.inf, math.inf)  # 2 / 2**5 > 0.05: no ratio rejected over 5 groups


def test_many_groups_are_flipped_at_random_and_the_interval_holds_the_ratio():
    rng = np.random.default_rng(1)
    den = rng.uniform(300, 600, 30)
    num = den * (2 + rng.normal(0, 0.1, 30))
    est = ratio_over_groups(num, den, "exp")
    low, high = est.ci
    assert low < est.value < high and est.value == pytest.approx(math.exp(num.sum() / den.sum()))
    assert est.method == "sign-flip test inverted (ratio of sums, 2000 random sign flips over groups)"
    assert ratio_over_groups(num, den, "exp") == est  # seeded: the same sums, the same interval


def test_the_paired_change_over_many_groups_is_the_split_interval_s_test():
    """Above 16 groups the change and a split's interval flip the same seeded random rows: for a mean against
    0 their intervals are one, and the change's p rejects exactly where its interval leaves 0 out."""
    rng = np.random.default_rng(2)
    for k in (17, 20, 49):
        x, ones = rng.normal(0.3, 1, k), np.ones(k)
        p, ci = random_permutation([(0 * x, ones, x, ones)])
        assert ci == pytest.approx(ratio_interval(x, ones))
        assert (p < 0.05) == (not ci[0] <= 0 <= ci[1])
        # by_groups over k groups of 3 items: this test on the groups' sums, not the cluster bootstrap
        index = np.repeat(np.arange(k), 3)
        d = by_groups([np.zeros(3 * k), np.ones(3 * k), np.repeat(x, 3) / 3, np.ones(3 * k)], index, None, None)
        assert d.test == "paired-permutation-random over groups" and (d.n, d.groups) == (3 * k, k)
        assert d.ci == pytest.approx((ci[0] / 3, ci[1] / 3)) and d.p == pytest.approx(p)  # each group's den is 3


def test_random_swaps_come_close_to_all_of_them():
    rng = np.random.default_rng(3)
    groups = [(rng.normal(2, 0.1, 14), np.ones(14), rng.normal(2.05, 0.1, 14), np.ones(14))]
    (p, ci), (p_random, ci_random) = exact_permutation(groups), random_permutation(groups)
    assert p_random == pytest.approx(p, abs=0.03) and ci_random == pytest.approx(ci, abs=0.02)
