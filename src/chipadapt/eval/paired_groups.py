"""Items drawn by whole groups (eval/paired.py's module docstring: an SFT run's validation threads by OASST
message tree), and the tests that swap or flip whole groups: which items fall in one group, the paired
permutation test (over items, or over groups' sums: a swap exchanges every item of a group at once), exact
over every swap (`exact_permutation`) or over RESAMPLES seeded random ones (`random_permutation`), and the
interval of one run's ratio of sums over its groups (`ratio_interval`, eval/intervals.py's sign-flip
interval over the groups' sums).

One run's ratio over k groups: the interval is the ratios r that the sign-flip test of the groups'
residuals num_g - r * den_g does not reject (all 2**k flips up to EXACT_MAX_ITEMS groups, RESAMPLES random
ones with the unflipped row above). It is exact where each residual is symmetric about 0 at the true ratio,
and its edges are the paired permutation test's: under 6 groups no ratio is rejected at 95% (2 / 2**5 >
0.05), the interval is unbounded, and a table prints "too few" (report.no_interval). Measured on 1000
simulated validations per k (tests/test_paired_groups_coverage.py's: groups of 5 items sharing a normal
shift; each share +-0.7 points): the percentile bootstrap over the k group sums used before covered 84%,
87%, 90% and 93% at k = 6, 8, 12 and 20 where it claimed 95% (resamples of so few draws are narrower than
their spread); this interval covers 96%, 95%, 94% and 95%. With skewed shifts (exponential, centred) and
groups of 1 to 13 items, 1000 per k (+-1 point), it covered 94%, 92%, 90%, 90%, 93% and 95% at k = 6, 8,
12, 17, 20 and 49 (exact only for symmetric residuals), the bootstrap 80%, 84%, 85%, 87%, 90% and 95%. A
Student-t interval over the groups (k - 1 df) covered as much with normal shifts, but 86% against 94% at
k=6 with the skewed ones, and would give 4 or 5 groups an interval that covered 85% with them: the rule of
no interval under 6 groups stays.

The paired change over groups (eval/paired.py's by_groups) is the same test on the two runs' group sums:
exact up to EXACT_MAX_ITEMS groups, `random_permutation` above (as over items, now), where the percentile
cluster bootstrap was before. The flips and the inversion themselves live in eval/intervals.py, which gives
one run's interval over items by the same test. Measured on 2000 simulated before/after pairs per k (a
true change of -0.05 nats per token, a shift per group; each share +-0.6 points): it covers 95.3%, 94.3%
and 94.7% at k = 17, 20 and 49 with normal shifts and groups of 5 (the bootstrap 93.2%, 92.3%, 93.0%), and
91.4%, 92.7% and 93.2% with the skewed shifts and groups of 1 to 13 items (the bootstrap 88.2%, 90.6%,
91.8%); its interval is 5-15% wider.
Where a moved docstring below says "module docstring", it is eval/paired.py's.
"""

import math

import numpy as np

from chipadapt.errors import ChipadaptError
from chipadapt.eval.intervals import (
    CONFIDENCE,
    EXACT_MAX_ITEMS,  # noqa: F401 (re-exported: every swap up to it, RESAMPLES random ones above)
    NOT_GIVEN,
    RESAMPLES,
    SEED,
    TRANSFORMS,
    UNBOUNDED,
    Estimate,
    exact_flips,
    flips_text,
    inverted,
    one_rate,
    random_flips,
    sign_flip_interval,
)

# Appended to the test's name where whole groups were resampled or swapped (module docstring).
OVER_GROUPS = " over groups"


# The note where every group's sums are equal in both runs: the items' test stands in (module docstring).
NOTHING_TO_VARY = (
    "every one of the {groups} groups has equal sums in both runs, so the difference is 0 and a test over "
    "groups has nothing to vary (its interval would be [0, 0]); the {n} items were tested instead as if "
    "independent, which items of one group are not"
)


class GroupsDiffer(ChipadaptError):
    """Two runs' records of one item name other groups: no test by group can be run; the message says why."""


def _swapped_statistics(groups: list, swaps) -> tuple[np.ndarray, np.ndarray, float]:
    """For each swap s (0/1 rows, in chunks), the statistic (the mean over groups of b's ratio of sums minus
    a's) minus the one seen, as c_s + k_s * delta when b's numerators are lowered by delta * b_den. Each
    ratio is linear in delta, and k_s >= 0: swapping moves some of the shift from b's side to a's. Also the
    ratios' scale."""
    t_parts, slope_parts = [], []
    for rows in swaps:
        t, slope, start = np.zeros(len(rows)), np.zeros(len(rows)), 0
        for a_num, a_den, b_num, b_den in groups:
            s = rows[:, start : start + len(a_num)]
            keep, start = 1 - s, start + len(a_num)
            b_side = np.maximum(keep @ b_den + s @ a_den, 1e-300)
            a_side = np.maximum(keep @ a_den + s @ b_den, 1e-300)
            t += (keep @ b_num + s @ a_num) / b_side - (keep @ a_num + s @ b_num) / a_side
            slope += -(keep @ b_den) / b_side + (s @ b_den) / a_side
        t_parts.append(t)
        slope_parts.append(slope)
    t, slope = np.concatenate(t_parts), np.concatenate(slope_parts)
    scale = max(
        max(abs(a_num.sum() / max(a_den.sum(), 1e-300)), abs(b_num.sum() / max(b_den.sum(), 1e-300)))
        for a_num, a_den, b_num, b_den in groups
    )
    return (t - t[0]) / len(groups), (slope - slope[0]) / len(groups), scale


def exact_permutation(groups: list, confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """Exact paired permutation test of the mean over groups of (b's ratio of sums - a's), groups given as
    (a_num, a_den, b_num, b_den) arrays: the two-sided p-value and the interval of shifts it does not
    reject (module docstring). For a mean (den = 1) it is the sign-flip test of the per-item differences."""
    return permutation_test(groups, [exact_flips(sum(len(group[0]) for group in groups))], confidence)


def random_permutation(
    groups: list, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> tuple[float, tuple[float, float]]:
    """exact_permutation's test over `resamples` seeded random swaps (the pairing seen in row 0) instead of
    all 2**n: for more items than EXACT_MAX_ITEMS, where all would be too many. p and interval come from
    the same rows, so the interval covers 0 exactly when p does not reject. The rows are drawn and used in
    chunks, so memory stays small at 14,000 items."""
    rows = random_flips(sum(len(group[0]) for group in groups), resamples, seed)
    return permutation_test(groups, rows, confidence)


def permutation_test(groups: list, swaps, confidence: float = CONFIDENCE) -> tuple[float, tuple[float, float]]:
    """The two-sided p-value and interval of shifts of the paired permutation test over the 0/1 rows
    `swaps` (chunks of them, row 0 swapping none): all 2**n of them (exact_permutation) or a random sample."""
    c, k, scale = _swapped_statistics(groups, swaps)
    c[np.abs(c) <= 1e-12 * max(scale, 1e-300)] = 0.0  # equal sums added in another order are a tie
    fixed = k <= 1e-12  # swaps whose statistic moves with the observed one (row 0, zero denominators)
    return inverted(c, k, fixed, confidence)


def group_index(keys: list) -> np.ndarray | None:
    """Each item's group as an index 0..k-1 from its key (equal keys: one group), in the items' order;
    None where every key is its own (no group holds several items: the items are the draws)."""
    index: dict = {}
    rows = [index.setdefault(key, len(index)) for key in keys]
    return np.asarray(rows) if len(index) < len(rows) else None


def matched_groups(a_items: dict[str, dict], b_items: dict[str, dict], ids: list[str]) -> np.ndarray | None:
    """Each item's group as an index 0..k-1, where the items' `group`s put several items in one (module
    docstring); None where every item is its own (no group recorded, or each a group of one).
    GroupsDiffer where the two runs record other groups for one item."""
    keys = []
    for i in ids:
        ga, gb = a_items[i].get("group"), b_items[i].get("group")
        if ga is not None and gb is not None and ga != gb:
            raise GroupsDiffer(
                f"item {i!r} is of group {ga!r} in the first run, {gb!r} in the second (another group_by, or "
                "other held-out data): the items of a group are one draw, and the runs do not agree which "
                "items belong together, so no test over groups can pair them; validate both with the same data"
            )
        # an item with no group in either run is its own: keyed apart from any group's name
        keys.append(("group", ga if ga is not None else gb) if ga is not None or gb is not None else ("item", i))
    return group_index(keys)


def ratio_interval(num, den, confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
    """The interval of sum(num) / sum(den) over k independent groups (num, den: each group's sums): the
    ratios r that the sign-flip test of the residuals num_g - r * den_g does not reject (this module's
    docstring; eval/intervals.py gives one run's over items the same way). Unbounded at both ends where no
    r is rejected (under 6 groups at 95%)."""
    return sign_flip_interval(num, den, confidence, seed)


def ratio_over_groups(num, den, transform: str | None = None) -> Estimate:
    """transform(sum num / sum den) over k groups' sums with ratio_interval's interval (ends through the
    transform, which is increasing) and the linearised standard error over the groups (as eval/intervals.py's
    `ratio` gives it over items); `n` the groups. No interval where every group is at one rate."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    k, f, r = len(num), TRANSFORMS[transform], num.sum() / den.sum()
    stderr = None
    if k > 1:
        residual = (num - r * den) / den.mean()
        stderr = float(math.sqrt((residual**2).sum() / (k * (k - 1))))
        if transform == "exp":
            stderr *= float(f(r))
    if one_rate(num, den, r):
        # Every group at one rate (an attribute model's errors all 0): no flip moves anything, and the
        # inverted test's [r, r] would read as certainty. Group sums have no [0, 1] bound to give the
        # exact binomial one run's [0, 1] items get (eval/intervals.py): no interval, saying why.
        method = f"{NOT_GIVEN} every group at the same value, {float(f(r)):.6g}; no spread to size an interval on"
        return Estimate(float(f(r)), stderr, UNBOUNDED, k, method)
    low, high = ratio_interval(num, den)
    method = f"sign-flip test inverted (ratio of sums, {flips_text(k)} over groups)"
    return Estimate(float(f(r)), stderr, (float(f(low)), float(f(high))), k, method)
