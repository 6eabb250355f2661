"""How sure a metric is: its standard error and 95% interval from the scores of its items.

Three kinds of metric, told apart by how an item's score is written (see `eval/items.py`):
- a proportion (each item passes or fails: `true`/`false`): the exact binomial (Clopper-Pearson)
  interval, which never undercovers, even at 0 or n successes and on a few dozen items;
- a mean of per-item numbers (ROUGE-L, F1, MRR) and a ratio of sums (`{"num", "den"}`: bits per byte
  over documents, instructions followed over prompts), optionally through `exp` (perplexity): the
  sign-flip test of the items' residuals num_i - r den_i inverted, the values r it does not reject (every
  flip up to EXACT_MAX_ITEMS items, RESAMPLES seeded random ones above, the unflipped row among them). It
  keeps the items as the draws (the tokens of a document, the instructions of a prompt are correlated)
  and is the rule the paired tests and the intervals over groups follow (eval/paired.py,
  eval/paired_groups.py). Under FEWEST_FOR_AN_INTERVAL (6) items it rejects no value at 95% (its smallest
  p, 2 / 2**5, is over 0.05): no interval, and the method says so ("interval n/a: n=4, too few"). The
  percentile bootstrap over items used before claimed 95% and covered, on 1000 seeded simulations per n,
  55%, 78%, 83%, 86%, 88%, 90% and 92% of a bits-per-byte ratio (lognormal document sizes) at n = 2, 4, 6,
  8, 16, 20 and 40, and 47% to 94% of a mean of Beta(1, 4) scores at n = 2 to 40 (resamples of a few
  draws are narrower than their spread). The sign-flip interval is exact where the residuals are
  symmetric at the true value (93.5-96% on the ratio at n = 6 to 40) and near it with skewed scores
  (92-95% on the Beta(1, 4) mean at n = 6 to 40); tests/test_small_sample_intervals32.py checks n = 8.
  Near 95% holds for moderately skewed scores, not for mostly-zero ones: on MRR-like scores, 85% of them 0,
  it covered 85%, 89% and 89% at 20, 50 and 100 items (the percentile bootstrap 87/90/90%, a Student-t
  interval 86/90/90%; no method here fixes that).
- every item at the same rate (all items scoring 0.5; IFEval prompts that each follow 1 of their 2
  instructions): no resampling or flip varies anything, and either would give a zero-width interval.
  A mean of [0, 1] scores, or counts of parts passed, all at one rate r: the exact binomial interval of
  n r successes over the n items (the items are the draws), which for r = 0 or 1 is Clopper-Pearson's
  (at any n, as before) and between them no narrower than a pass/fail metric's at that rate (from 6 items
  on; under 6 none, as for any mean); any other constant (bits per byte equal on every document): no
  interval.
The standard error: for a proportion and a mean, the sample standard deviation over sqrt(n) (n - 1 in
the variance, as lm-evaluation-harness's `_stderr`); for a ratio of sums, the delta-method (linearised)
one, sqrt(sum((num_i - r den_i)^2) / (n (n - 1))) / mean(den), not a standard deviation of any scores;
through `exp`, that times exp(r) (the delta method again).
Random flips and bootstraps use a fixed seed, so the same scores always give the same interval.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
# Up to this many items (or groups) a sign-flip or swap test enumerates every flip (2**16 = 65,536 rows of
# n numbers: milliseconds); above it RESAMPLES seeded random ones, the unflipped row among them.
EXACT_MAX_ITEMS = 16
# The fewest draws (items, or groups) a sign-flip test can reject a value with at 95%: with n its smallest
# two-sided p is 2 / 2**n, and 2 / 2**5 > 0.05. Under it no interval is given: the honest answer.
FEWEST_FOR_AN_INTERVAL = math.ceil(math.log2(2 / (1 - CONFIDENCE)) - 1e-9)
# How an interval not given is named (its first clause is what a table prints: report.why_no_interval).
NOT_GIVEN = "interval n/a:"
UNBOUNDED = (-math.inf, math.inf)
# Rows of random flips drawn and used at a time: memory stays at CHUNK x n, whatever the item count.
CHUNK = 256


def _exp(x):
    """exp, inf past the float range (a diverged model's mean loss of 57,527 nats: its perplexity is
    inf), without numpy's overflow warning."""
    with np.errstate(over="ignore"):
        return np.exp(x)


TRANSFORMS = {None: lambda x: x, "exp": _exp}


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float | None  # None for a single item
    ci: tuple[float, float]
    n: int
    method: str


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact binomial interval: the p whose one-sided tail probabilities are (1 - confidence) / 2."""
    from scipy.stats import beta  # slow to import: only when an interval is computed

    if n <= 0:
        raise ValueError("clopper_pearson: no trials")
    alpha = 1 - confidence
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return lo, hi


def proportion(passed: list[bool]) -> Estimate:
    n = len(passed)
    k = int(sum(bool(x) for x in passed))
    p = k / n
    stderr = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None
    return Estimate(p, stderr, clopper_pearson(k, n), n, "clopper-pearson")


def ratio(
    num: list[float],
    den: list[float] | None = None,
    transform: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """f(sum num / sum den) (den = 1 per item: a mean) with the sign-flip interval over items (module
    docstring); none under FEWEST_FOR_AN_INTERVAL items, the exact binomial where every item has one rate."""
    num_a = np.asarray(num, dtype=np.float64)
    den_a = np.ones_like(num_a) if den is None else np.asarray(den, dtype=np.float64)
    n = len(num_a)
    if n == 0 or den_a.sum() <= 0:
        raise ValueError("ratio: no items, or a zero denominator")
    f = TRANSFORMS[transform]
    r = num_a.sum() / den_a.sum()
    stderr = None
    if n > 1:
        # Linearised (delta-method) standard error of a ratio of sums; for den = 1 it is sd / sqrt(n).
        residual = (num_a - r * den_a) / den_a.mean()
        stderr = float(math.sqrt((residual**2).sum() / (n * (n - 1))))
        if transform == "exp":
            stderr *= float(_exp(r))  # math.exp raised OverflowError past ~709 nats
    if one_rate(num_a, den_a, r):
        return Estimate(float(f(r)), stderr, *_one_rate_interval(num_a, den_a, r, n, den is None, transform))
    if n < FEWEST_FOR_AN_INTERVAL:
        return Estimate(float(f(r)), stderr, UNBOUNDED, n, too_few(n, "items"))
    lo, hi = sign_flip_interval(num_a, den_a, seed=seed, resamples=resamples)
    kind = "mean" if den is None else "ratio of sums"
    return Estimate(
        float(f(r)),
        stderr,
        (float(f(lo)), float(f(hi))),
        n,
        f"sign-flip test inverted ({kind}, {flips_text(n, resamples)} over items)",
    )


def too_few(n: int, unit: str) -> str:
    """The method of an interval not given over n draws (module docstring); its first clause is what a
    table prints (`interval n/a: n=4, too few`; items drawn by whole groups: `n=4 groups, too few`)."""
    counted = f"n={n}" if unit == "items" else f"n={n} {unit}"
    return (
        f"{NOT_GIVEN} {counted}, too few; a sign-flip test over {n} {unit} can reject no value at 95% (its "
        f"smallest p, 2 / 2**{n}, is over 0.05)"
    )


def flips_text(n: int, resamples: int = RESAMPLES) -> str:
    return "every sign flip" if n <= EXACT_MAX_ITEMS else f"{resamples} random sign flips"


def one_rate(num: np.ndarray, den: np.ndarray, r: float) -> bool:
    """Every item at the rate r (one item included): nothing a flip or resample moves."""
    scale = max(float(np.abs(num).max()), float(np.abs(den).max()) * abs(r), 1e-300)
    return bool(np.all(np.abs(num - r * den) <= 1e-12 * scale))


def _one_rate_interval(num, den, r: float, n: int, mean: bool, transform) -> tuple:
    """(ci, n, method) where every item has the rate r (module docstring): the exact binomial of n r
    successes over the n items for [0, 1] scores or counts of parts (between 0 and 1 from
    FEWEST_FOR_AN_INTERVAL items on, as for any mean), no interval for any other constant."""
    interior = 0 < r < 1
    if interior and n < FEWEST_FOR_AN_INTERVAL:
        return UNBOUNDED, n, too_few(n, "items")  # as any mean of so few (MRR 0.5 over 1 query)
    if transform is None and 0 <= r <= 1 and (mean or _counts(num, den)):
        # All at a bound ([1, 1] for MRR over 2 queries was the bootstrap's): n passes or n failures,
        # Clopper-Pearson's interval, which a score between them cannot narrow; between the bounds the
        # interval of as many passes, no narrower than a pass/fail metric's at that rate.
        what = "item at 0 or 1" if r in (0.0, 1.0) else f"item at the rate {r:.4g}"
        return clopper_pearson(n * r, n), n, f"clopper-pearson over items (every {what}: nothing to resample or flip)"
    method = f"{NOT_GIVEN} every item at the same value, {r:.6g}; no spread to size an interval on"
    return UNBOUNDED, n, method


def _counts(num: np.ndarray, den: np.ndarray) -> bool:
    """Counts of parts passed out of parts: whole numbers, 0 <= num <= den."""
    whole = np.all(num == np.round(num)) and np.all(den == np.round(den))
    return bool(whole and np.all((num >= 0) & (num <= den)))


def exact_flips(n: int) -> np.ndarray:
    """Every way to flip (or swap a and b on) some of n items, as 0/1 rows; row 0 flips none (the one seen)."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def random_flips(n: int, resamples: int = RESAMPLES, seed: int = SEED, chunk: int = CHUNK):
    """`resamples` seeded 0/1 rows over n items in chunks of rows, row 0 the one seen, as in exact_flips: a
    randomization test that counts the row seen among its rows stays exact (its p is never below
    1 / resamples). The rows are those of one draw of (resamples - 1, n), chunked or not."""
    rng = np.random.default_rng(seed)
    yield np.zeros((1, n))
    for start in range(0, resamples - 1, chunk):
        yield rng.integers(0, 2, size=(min(chunk, resamples - 1 - start), n)).astype(np.float64)


def flip_rows(n: int, resamples: int = RESAMPLES, seed: int = SEED):
    """The rows of a sign-flip test over n draws, in chunks: every flip up to EXACT_MAX_ITEMS, random above."""
    return iter([exact_flips(n)]) if n <= EXACT_MAX_ITEMS else random_flips(n, resamples, seed)


def inverted(c: np.ndarray, slope: np.ndarray, fixed: np.ndarray, confidence: float = CONFIDENCE):
    """The values delta a permutation test does not reject, where each row's statistic less the one seen is
    c + slope * delta (slope >= 0; `fixed`: rows that do not move with delta, row 0 among them): a row is at
    least as far up as the one seen for delta >= its root, at most as far for delta <= it. Also p at
    delta = 0, twice the smaller share of rows on either side, so that the interval covers 0 exactly when
    p >= 1 - confidence."""
    up_always, down_always = int((c[fixed] >= 0).sum()), int((c[fixed] <= 0).sum())
    roots = np.sort(-c[~fixed] / slope[~fixed])
    at_least = up_always + int((roots <= 0).sum())
    at_most = down_always + int((roots >= 0).sum())
    p = min(1.0, 2 * min(at_least, at_most) / len(c))
    needed = math.ceil((1 - confidence) * len(c) / 2 - 1e-9)
    low = -math.inf if up_always >= needed else float(roots[needed - up_always - 1])
    high = math.inf if down_always >= needed else float(roots[::-1][needed - down_always - 1])
    return p, (low, high)


def sign_flip_interval(
    num, den, confidence: float = CONFIDENCE, seed: int = SEED, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """The interval of sum(num) / sum(den) over n independent draws (items, or groups' sums): the ratios r
    that the sign-flip test of the residuals num_i - r * den_i does not reject (module docstring).
    Unbounded at both ends where no r is rejected (under FEWEST_FOR_AN_INTERVAL draws at 95%)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    # The statistic is the residuals' sum; flipping the draws in a row moves it, less the one seen, by
    # c + slope * r, slope >= 0.
    parts = [(-2 * (rows @ num), 2 * (rows @ den)) for rows in flip_rows(len(num), resamples, seed)]
    c, slope = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    c[np.abs(c) <= 1e-12 * max(abs(num).sum(), 1e-300)] = 0.0  # flipping draws that sum to 0 ties the one seen
    fixed = slope <= 1e-12 * max(den.sum(), 1e-300)  # rows flipping no denominator (row 0)
    return inverted(c, slope, fixed, confidence)[1]


def bootstrap_ratios(num: np.ndarray, den: np.ndarray, resamples: int, seed: int, chunk: int = 256) -> np.ndarray:
    """sum(num[idx]) / sum(den[idx]) for `resamples` draws of n item indices with replacement.
    Drawn in chunks so memory stays at chunk x n, whatever the item count."""
    rng = np.random.default_rng(seed)
    n, out = len(num), []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        out.append(num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-300))
    return np.concatenate(out)


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = 1 - confidence
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_of_ratios(
    groups: list[tuple[list[float], list[float]]], resamples: int = RESAMPLES, seed: int = SEED
) -> Estimate:
    """The unweighted mean of several groups' ratios of sums (domain_mean.bpb: one ratio per corpus
    source). Each group's items are resampled on their own (a stratified bootstrap); the standard
    error adds the groups' variances, which are independent. Under FEWEST_FOR_AN_INTERVAL items no
    interval, as for one ratio; one item per group: the groups' values are the draws of `ratio`'s test."""
    parts = [ratio(num, den, resamples=resamples, seed=seed) for num, den in groups]
    k = len(groups)
    if k > 1 and all(p.n == 1 for p in parts):
        # One item per group: resampling inside a group cannot vary, and the stratified interval would
        # be a point. The groups' values are then the draws, as a mean's items are (`ratio`).
        est = ratio([p.value for p in parts], resamples=resamples, seed=seed)
        return dataclasses.replace(est, method=f"{est.method} (the groups' values: one item each)")
    n = sum(p.n for p in parts)
    stderrs = [p.stderr for p in parts]
    stderr = None if None in stderrs else math.sqrt(sum(s * s for s in stderrs)) / k
    if n < FEWEST_FOR_AN_INTERVAL:
        return Estimate(sum(p.value for p in parts) / k, stderr, UNBOUNDED, n, too_few(n, "items"))
    draws = [
        bootstrap_ratios(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64), resamples, seed + g + 1)
        for g, (num, den) in enumerate(groups)
    ]
    return Estimate(
        sum(p.value for p in parts) / k,
        stderr,
        percentile_interval(np.mean(draws, axis=0)),
        n,
        f"bootstrap-percentile (stratified by group, {resamples} resamples)",
    )
