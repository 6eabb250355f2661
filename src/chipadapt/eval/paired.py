"""Two runs on the same items: the difference of a metric, its 95% interval and a p-value.

Items are matched on their id, so each model's own item difficulty cancels out (a paired test
resolves differences that two independent intervals would call overlapping).
- Pass/fail scores: McNemar's test. Only discordant items (b: right only in the first run, c: right only
  in the second) move the difference (c - b) / n. The interval is Tango's score interval (Stat. Med.
  1998): the differences a score test, with the probability of a discordant item profiled out, does not
  reject. At a difference of 0 that statistic is McNemar's, (c - b) / sqrt(b + c). The exact conditional
  interval used before ends at the estimate when all discordant items go one way (+0.019 [-0.013, +0.019]
  for 2 gained, 0 lost of 108) and is a single point when none are (Newcombe, Stat. Med. 1998); Tango's is
  neither. The p-value: with b + c >= EXACT_P_BELOW (25) McNemar's score test, which rejects at 0.05
  exactly when Tango's interval leaves 0 out; below it the exact binomial test (b of b + c at 1/2,
  twice the smaller tail), since the score test is liberal there (5 of 5 one way: 0.025, exact 0.0625; 7
  against 1: 0.034, exact 0.070). Tango's interval is kept (the exact conditional one is the point or
  one-sided interval above), so with few discordant items it can leave 0 out while the exact p is 0.05 or
  more: the verdict then follows the exact p ("within noise"), and `note` says so (the tables print it).
  The exact test cannot reject with fewer than 6 discordant items (2 * 0.5**5 > 0.05), so the earlier rule
  "fewer than MIN_DISCORDANT is within noise" is one of its consequences, no extra threshold.
- Counts of parts passed (IFEval's instructions followed of a prompt's) on which every item's two counts
  are equal: no resampling or permutation varies anything, and both would give a zero-width interval
  ([+0, +0] over 8 prompts, a certainty no 8 prompts give). The parts are then taken as McNemar items,
  none discordant, and Tango's interval over them is given (`tango-over-parts`): it counts each part as
  matched, as equal counts suggest but do not prove, and ignores that a prompt's parts are correlated, so it
  is narrower than a prompt-level interval would be, but it has the width the parts' number allows.
- Numbers and ratios over more than EXACT_MAX_ITEMS items: the same permutation test as below over
  RESAMPLES seeded random swaps (the pairing seen in row 0), inverted the same way, p from the same swaps,
  so interval, p and verdict agree (`paired-permutation-random`). The paired bootstrap used before called
  differences of a few items "higher": 4 of 541 prompts gaining an instruction, +0.0037 [+0.0009, +0.0074]
  p 0.034, where no swap test over 4 differing items goes below 2 / 2**4; under "no difference" with 4-10
  items differing it said "higher" or "lower" 5.7-7.2% of the time, and covered 88.7% at 17 skewed items.
  Items whose two scores are equal move nothing under a swap, so only the differing ones count.
- Numbers and ratios over EXACT_MAX_ITEMS items or fewer: the exact paired permutation test. A
  bootstrap is far too sure there: 4 items all one way gave p = 0.001 and a narrow interval, where no
  exact test can go below 2 / 2**4 = 0.125 (resampling 4 items only ever sees those 4). Under "no
  difference" each item's two scores are exchangeable, so all 2**n swaps of an item's a and b (for a
  mean: the signs of the per-item differences) are enumerated, and p is twice the smaller share of swaps
  whose difference is at least (at most) the one seen. The interval is the shifts delta of the second
  run that this test does not reject (each of its scores lowered by delta per unit of denominator): it
  covers 0 exactly when p >= 1 - confidence, so interval, p and verdict never disagree, and it assumes
  nothing about the items' distribution. A Student-t interval was not chosen: it can leave 0 out where
  the exact p is 0.125 (4 close differences all one way), which would bring back the contradiction. With 5
  items or fewer no shift is rejected at 95% (2 / 2**5 > 0.05), so the interval is unbounded: the honest
  answer for so few items.
- Every item (or group) differing by the same amount d (a constant difference; d = 0 where the two runs'
  numbers are equal on every item): the test's inverted interval is the point [d, d], the only shift after
  which a swap moves nothing, and over 6 or more draws all one way its p (2 / 2**n, or 1 / RESAMPLES over
  random swaps) rejects 0. Both are kept: the p is exact for these draws, and a wider interval would need
  a spread the data do not show (every rank-, sign- or permutation-based interval of n equal differences is
  that point; the constant-rate rule of one run's interval, eval/intervals.py, has Clopper-Pearson only for
  [0, 1] scores at one rate, and a difference of two has no such bound). The point is marked instead:
  `note` says every draw differs by d, so that it does not read as a difference known exactly (SAME_SHIFT).
- A metric written in other forms by the two runs ({"num", "den"} in one, a number in the other, or another
  transform), or in both forms within one run, is refused (ScoresDiffer, a ChipadaptError): a ratio of sums
  against a mean of per-item ratios is no difference of one quantity (the same bits per byte read +0.30
  "higher"); compare.py's table shows the pair as "not paired", with the message.
- Items that carry a `group` (an SFT run's validation items: the OASST message tree of each held-out thread,
  stages/validation_items.py) where some group holds several: the groups are the independent draws (28 threads
  of 4 trees are 4), so whole groups are swapped. Each group's items are summed (a pass/fail score as 1 or 0
  out of 1), the metric being the ratio of sums over groups as over items, and the permutation test above runs
  on the groups' sums (a swap exchanges every item of a group at once): exact up to EXACT_MAX_ITEMS groups,
  above it over RESAMPLES seeded random swaps, as over items (it covered 94-95% at 17 to 49 groups, 91-93%
  with skewed shifts, where the cluster bootstrap used before covered 92-93% and 88-92%:
  eval/paired_groups.py); the test's name ends in " over groups", and `groups` counts them beside `n`.
  Items each their own group, or without one, are compared as above. An item without a group in one run
  takes the other's (a run from before the record); two runs that
  put one item in other groups are refused (GroupsDiffer): which items move together is then not known. Where
  every group's sums are equal in both runs (the difference is 0) a test over groups has nothing to vary (its
  interval would be [0, 0]): the items are then tested as above, as if independent, and the result keeps
  `groups` with a `note` saying so (NOTHING_TO_VARY). A training run's own before/after change groups the same
  way (modules/val_figures.py, through `group_index` and `by_groups`), and its splits' intervals by the same
  sign-flip test inverted for one run's ratio (paired_groups.ratio_over_groups).
"within noise" means the interval covers 0 or, for McNemar, p >= 1 - confidence (the two disagree only
below EXACT_P_BELOW discordant items, where `note` says which decided); otherwise the second run is "higher"
or "lower".
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from chipadapt.errors import ChipadaptError
from chipadapt.eval.intervals import CONFIDENCE, RESAMPLES, SEED, TRANSFORMS

# The group machinery and the exact test live in paired_groups.py; importers read them from here too.
from chipadapt.eval.paired_groups import (  # noqa: F401 (re-exported)
    EXACT_MAX_ITEMS,
    NOTHING_TO_VARY,
    OVER_GROUPS,
    GroupsDiffer,
    exact_permutation,
    group_index,
    matched_groups,
    random_permutation,
)

# The name results and reports give the test of pass/fail scores.
MCNEMAR = "mcnemar-tango"
# Discordant items a McNemar difference needs before it can be told from noise: the exact test cannot
# reject with fewer, even all one way (2 * 0.5**5 > 0.05); the report sizes experiments with it.
MIN_DISCORDANT = 6
# Below this many discordant items McNemar's p is the exact binomial one (the usual rule of thumb for the
# normal approximation to b of b + c at 1/2); from it on, the score test that matches Tango's interval.
EXACT_P_BELOW = 25
# Counts of parts with no spread over items: Tango's interval over the parts (module docstring).
PARTS_TANGO = "tango-over-parts"
EXACT = "paired-permutation-exact"
# The same test over a seeded random sample of the swaps (more groups than EXACT_MAX_ITEMS).
RANDOM = "paired-permutation-random"
# The note where every item (or group) differs by the same amount (module docstring).
SAME_SHIFT = (
    "every one of the {n} {unit} differs by {d:+.4g}: with no spread in the differences the interval is that "
    "point, the one shift the test does not reject, not a certainty about other {unit}; the verdict rests on "
    "the test's p"
)


@dataclass(frozen=True)
class PairedDifference:
    a: float  # metric of the first run on the matched items
    b: float  # metric of the second run on the matched items
    diff: float  # b - a
    ci: tuple[float, float]
    p: float
    n: int  # matched items
    test: str
    discordant: int | None = None  # McNemar: the items on which the two runs disagree
    first_only: int | None = None  # McNemar's b: items right in the first run only
    this_only: int | None = None  # McNemar's c: items right in the second run only
    p_method: str = ""  # McNemar: "exact binomial" or "score"; the test's own otherwise
    alpha: float = round(1 - CONFIDENCE, 12)  # p below it rejects "no difference"
    groups: int | None = None  # the groups the items fall in (module docstring); None: no item shares one
    group_note: str = ""  # NOTHING_TO_VARY where the groups' sums left nothing to test over groups
    spread_note: str = ""  # SAME_SHIFT where every draw differs by the same amount: the interval is a point

    @property
    def too_few_discordant(self) -> bool:
        return self.test == MCNEMAR and (self.discordant or 0) < MIN_DISCORDANT

    @property
    def covers_zero(self) -> bool:
        return self.ci[0] <= 0 <= self.ci[1]

    @property
    def verdict(self) -> str:
        if self.covers_zero or (self.test == MCNEMAR and self.p >= self.alpha):
            return "within noise"
        return "higher" if self.diff > 0 else "lower"

    @property
    def note(self) -> str:
        """What a reader must know beside the row: why the verdict is not what the interval alone says
        (McNemar with few discordant items, whose exact p and Tango's score interval can disagree), that
        groups whose sums are all equal were tested item by item (group_note), and that a point interval is
        the differences' lack of spread, not certainty (spread_note); "" for none."""
        return "; ".join(text for text in (self._verdict_note(), self.group_note, self.spread_note) if text)

    def _verdict_note(self) -> str:
        if self.test != MCNEMAR or self.covers_zero == (self.p >= self.alpha):
            return ""
        counts = (
            f"{self.discordant} discordant items ({self.first_only} right in the first run only, "
            f"{self.this_only} in this one only)"
        )
        if self.covers_zero:
            return (
                f"{self.p_method} McNemar p {self.p:.3g} < {self.alpha:g} over {counts}, but Tango's interval covers 0"
            )
        return (
            f"within noise by the exact McNemar test: p {self.p:.3g} >= {self.alpha:g} over {counts}; Tango's "
            f"score interval leaves 0 out, but the score test is liberal below {EXACT_P_BELOW} discordant items"
        )


def _tango_statistic(gained: int, lost: int, n: int, delta: float) -> float:
    """Score statistic for the difference (gained - lost) / n = delta: the restricted maximum-likelihood
    probability of a "lost" item has a closed form (a quadratic's root)."""
    w = -gained - lost + (2 * n - gained + lost) * delta
    q = (math.sqrt(max(w * w + 8 * n * lost * delta * (1 - delta), 0.0)) - w) / (4 * n)
    variance = n * (2 * q + delta * (1 - delta))
    return (gained - lost - n * delta) / math.sqrt(max(variance, 1e-300))


def tango_interval(gained: int, lost: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The differences delta with |statistic| below the normal quantile (it falls as delta grows)."""
    from scipy.optimize import brentq  # slow to import: only when a test is run
    from scipy.stats import norm

    z, estimate, edge = float(norm.ppf(0.5 + confidence / 2)), (gained - lost) / n, 1 - 1e-12
    low, high = -1.0, 1.0
    if _tango_statistic(gained, lost, n, -edge) > z:
        low = brentq(lambda d: _tango_statistic(gained, lost, n, d) - z, -edge, estimate, xtol=1e-12)
    if _tango_statistic(gained, lost, n, edge) < -z:
        high = brentq(lambda d: _tango_statistic(gained, lost, n, d) + z, estimate, edge, xtol=1e-12)
    return float(low), float(high)


def mcnemar(a: list[bool], b: list[bool], confidence: float = CONFIDENCE) -> PairedDifference:
    n = len(a)
    gained = sum(1 for x, y in zip(a, b) if not x and y)  # wrong in a, right in b
    lost = sum(1 for x, y in zip(a, b) if x and not y)
    m = gained + lost
    pa, pb = sum(map(bool, a)) / n, sum(map(bool, b)) / n
    p, method = mcnemar_p(gained, lost)
    ci = tango_interval(gained, lost, n, confidence)
    return PairedDifference(
        pa, pb, (gained - lost) / n, ci, p, n, MCNEMAR, m, lost, gained, method, round(1 - confidence, 12)
    )


def mcnemar_p(gained: int, lost: int) -> tuple[float, str]:
    """Two-sided McNemar p and how it was computed: exact binomial below EXACT_P_BELOW discordant items,
    the score test (McNemar's chi-square without continuity correction) from there on."""
    from scipy.stats import binom, norm

    m = gained + lost
    if m == 0:
        return 1.0, "exact binomial"
    if m < EXACT_P_BELOW:
        return min(1.0, float(2 * binom.cdf(min(gained, lost), m, 0.5))), "exact binomial"
    return min(1.0, float(2 * norm.sf(abs(gained - lost) / math.sqrt(m)))), "score"


def paired_bootstrap(
    a_num,
    a_den,
    b_num,
    b_den,
    transform: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """f(sum b_num / sum b_den) - f(sum a_num / sum a_den) on the same items by the paired permutation
    test: exact over EXACT_MAX_ITEMS items or fewer, over `resamples` seeded random swaps above (every
    caller gets it here; the name is the paired bootstrap's, which it was above 16 items)."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (a_num, a_den, b_num, b_den)]
    a_num, a_den, b_num, b_den = arrays
    if transform is None and _equal_counts(a_num, a_den, b_num, b_den):
        f = TRANSFORMS[transform]
        stat_a, stat_b = float(f(a_num.sum() / a_den.sum())), float(f(b_num.sum() / b_den.sum()))
        ci = tango_interval(0, 0, int(a_den.sum()))
        return PairedDifference(stat_a, stat_b, 0.0, ci, 1.0, len(a_num), PARTS_TANGO, 0, 0, 0, "exact binomial")
    return _resampled(arrays, transform, resamples, seed)


def _resampled(arrays: list[np.ndarray], transform: str | None, resamples: int, seed: int, unit: str = "items"):
    """paired_bootstrap's test over the rows of (a_num, a_den, b_num, b_den): items, or groups' sums (`unit`
    names which, for the note where every one differs by the same amount)."""
    a_num, a_den, b_num, b_den = arrays
    n = len(a_num)
    f = TRANSFORMS[transform]
    rate_a, rate_b = a_num.sum() / a_den.sum(), b_num.sum() / b_den.sum()
    stat_a, stat_b = float(f(rate_a)), float(f(rate_b))
    if n <= EXACT_MAX_ITEMS:
        p, shifts = exact_permutation([arrays])
        test = EXACT
    else:
        # Above EXACT_MAX_ITEMS: the same test over seeded random swaps (module docstring). The paired
        # bootstrap used before called 4 items of 541 that differ "higher" (p 0.034) where no sign-flip over
        # them goes below 2 / 2**4.
        p, shifts = random_permutation([arrays], resamples, seed)
        test = RANDOM
    ci = shifts if transform is None else _through(f, rate_a, shifts)
    spread = ""
    if _no_spread(shifts, max(abs(rate_a), abs(rate_b))):
        # Every draw moved by the same amount: the one shift not rejected is it (module docstring).
        ci = (stat_b - stat_a, stat_b - stat_a)
        spread = SAME_SHIFT.format(n=n, unit=unit, d=stat_b - stat_a)
    return PairedDifference(stat_a, stat_b, stat_b - stat_a, ci, p, n, test, spread_note=spread)


def _no_spread(shifts: tuple[float, float], scale: float) -> bool:
    """The test's interval of shifts is a point (to rounding): every draw's difference is the same."""
    low, high = shifts
    return math.isfinite(low) and math.isfinite(high) and high - low <= 1e-9 * max(scale, 1e-300)


def _equal_counts(a_num, a_den, b_num, b_den) -> bool:
    """Whole counts of parts passed out of parts (0 <= num <= den), the same in both runs on every item:
    the differences have no spread (module docstring)."""
    whole = all(np.all(x == np.round(x)) for x in (a_num, a_den))
    return bool(
        whole
        and a_den.sum() > 0
        and np.all((a_num >= 0) & (a_num <= a_den))
        and np.array_equal(a_num, b_num)
        and np.array_equal(a_den, b_den)
    )


def _through(f, rate_a: float, shifts: tuple[float, float]) -> tuple[float, float]:
    """Shifts of the untransformed rate as differences of f (perplexity from bits): f(a + delta) - f(a),
    at the first run's rate; f is increasing, so the ends stay in order. An unbounded end stays unbounded:
    exp(a - inf) - exp(a) = -exp(a) is no bound the test gave (4 documents read [-509.3, +inf] for ppl
    beside [-inf, +inf] for bits per byte)."""
    return tuple(float(f(rate_a + delta) - f(rate_a)) if math.isfinite(delta) else float(delta) for delta in shifts)


class ScoresDiffer(ChipadaptError):
    """The two runs (or one run's items) write one metric's scores in other forms: {"num", "den"} beside a
    number, or another transform. Pairing them would compare other quantities; the message says which."""


def _num_den(values: list, metric: str, run: str) -> tuple[list[float], list[float], str | None]:
    """(nums, dens, transform) of one run's scores on `metric`: ratio parts where every score is
    {"num", "den"}, a number over 1 where every one is a number; ScoresDiffer where they mix."""
    if all(isinstance(v, dict) for v in values):
        transforms = {v.get("transform") for v in values}
        if len(transforms) > 1:
            raise ScoresDiffer(f"{metric}: the {run} run's items mix transforms {sorted(map(str, transforms))}")
        return [v["num"] for v in values], [v["den"] for v in values], transforms.pop()
    if any(isinstance(v, dict) for v in values):
        raise ScoresDiffer(
            f"{metric}: the {run} run's items mix {{num, den}} ratio parts with plain numbers: one metric is "
            "written in two forms, and no one difference compares them"
        )
    return [float(v) for v in values], [1.0] * len(values), None


def matched_ids(a_items: dict[str, dict], b_items: dict[str, dict], metric: str) -> list[str]:
    """The ids of the items both runs scored on `metric` ({id: item}), in the first run's order."""
    return [
        i
        for i in a_items
        if i in b_items
        and a_items[i]["scores"].get(metric) is not None
        and b_items[i]["scores"].get(metric) is not None
    ]


def matched_scores(a_items: dict[str, dict], b_items: dict[str, dict], metric: str) -> tuple[list, list]:
    """`metric`'s scores in both runs on the items both scored ({id: item}), in the same order."""
    ids = matched_ids(a_items, b_items, metric)
    return [a_items[i]["scores"][metric] for i in ids], [b_items[i]["scores"][metric] for i in ids]


def by_groups(arrays: list, index: np.ndarray, transform: str | None, items_test) -> PairedDifference:
    """The test of (a_num, a_den, b_num, b_den) over the groups `index` puts the items in (module
    docstring): on the groups' sums, named "... over groups", `n` the items and `groups` their groups.
    Where every group's sums are equal in both runs, `items_test()` (the items' own test) with `groups`
    kept and NOTHING_TO_VARY as its note."""
    sums = [np.bincount(index, weights=np.asarray(x, dtype=np.float64)) for x in arrays]
    k, n = len(sums[0]), len(index)
    if np.array_equal(sums[0], sums[2]) and np.array_equal(sums[1], sums[3]):
        return dataclasses.replace(items_test(), groups=k, group_note=NOTHING_TO_VARY.format(groups=k, n=n))
    d = _resampled(sums, transform, RESAMPLES, SEED, unit="groups")
    return dataclasses.replace(d, n=n, test=d.test + OVER_GROUPS, groups=k)


def paired_difference(a_items: dict[str, dict], b_items: dict[str, dict], metric: str) -> PairedDifference | None:
    """The difference b - a of `metric` on the items both runs scored ({id: item}); None when they share
    none. Over groups where the items carry them (module docstring)."""
    ids = matched_ids(a_items, b_items, metric)
    if not ids:
        return None
    a, b = [a_items[i]["scores"][metric] for i in ids], [b_items[i]["scores"][metric] for i in ids]
    booleans = all(isinstance(v, bool) for v in a + b)
    # a pass/fail score is 1 or 0 out of 1 where groups sum it
    (a_num, a_den, a_tf), (b_num, b_den, b_tf) = (
        _num_den([float(v) if booleans else v for v in x], metric, run) for x, run in ((a, "first"), (b, "second"))
    )
    forms = [("{num, den} ratio parts" if isinstance(x[0], dict) else "numbers") for x in (a, b)]
    if forms[0] != forms[1] or a_tf != b_tf:
        # bits per byte as {"num", "den"} in one run and a per-document number in the other: a ratio of sums
        # against a mean of ratios, whose "difference" (+0.30) was no model's
        raise ScoresDiffer(
            f"{metric}: the runs score it in other forms (the first as {forms[0]}, transform {a_tf}; the "
            f"second as {forms[1]}, transform {b_tf}): not the same quantity, so no paired difference"
        )

    def items_test() -> PairedDifference:
        return mcnemar(a, b) if booleans else paired_bootstrap(a_num, a_den, b_num, b_den, a_tf)

    index = matched_groups(a_items, b_items, ids)
    return items_test() if index is None else by_groups([a_num, a_den, b_num, b_den], index, a_tf, items_test)


def paired_mean_of_ratios(
    groups: list[tuple[list[float], list[float], list[float], list[float]]],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """b - a of an unweighted mean of per-group ratios of sums (corpus_ppl's domain_mean.bpb: one
    ratio per corpus source), each group given as (a_num, a_den, b_num, b_den) over its matched items.
    The paired permutation test over all groups' items together (a swap exchanges an item's two runs within
    its group): exact over EXACT_MAX_ITEMS items or fewer, over `resamples` seeded random swaps above."""
    k = len(groups)
    arrays = [[np.asarray(x, dtype=np.float64) for x in group] for group in groups]
    stat_a = sum(a_num.sum() / a_den.sum() for a_num, a_den, _, _ in arrays) / k
    stat_b = sum(b_num.sum() / b_den.sum() for _, _, b_num, b_den in arrays) / k
    n = sum(len(group[0]) for group in arrays)
    if n <= EXACT_MAX_ITEMS:
        p, ci = exact_permutation(arrays)
        test = f"{EXACT} ({'one item per group' if n == k else 'stratified by group'})"
        return PairedDifference(float(stat_a), float(stat_b), float(stat_b - stat_a), ci, p, n, test)
    p, ci = random_permutation(arrays, resamples, seed)
    test = f"{RANDOM} ({'one item per group' if n == k else 'stratified by group'})"
    return PairedDifference(float(stat_a), float(stat_b), float(stat_b - stat_a), ci, p, n, test)


def paired_domain_mean(
    a_items: dict[str, dict], b_items: dict[str, dict], metrics: list[str]
) -> PairedDifference | None:
    """b - a of the unweighted mean of `metrics` (ratio scores such as `openroad.bpb`, one per source)
    on the items both runs scored; None when a metric has no matched item."""
    groups = []
    for metric in metrics:
        a, b = matched_scores(a_items, b_items, metric)
        if not a:
            return None
        groups.append(([v["num"] for v in a], [v["den"] for v in a], [v["num"] for v in b], [v["den"] for v in b]))
    return paired_mean_of_ratios(groups) if groups else None
