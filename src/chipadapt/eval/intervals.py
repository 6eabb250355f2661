"""How sure a metric is: its standard error and 95% interval from the scores of its items.

Three kinds of metric, told apart by how an item's score is written (see `eval/items.py`):
- a proportion (each item passes or fails: `true`/`false`): the exact binomial (Clopper-Pearson)
  interval, which never undercovers, even at 0 or n successes and on a few dozen items;
- a mean of per-item numbers (ROUGE-L, F1, MRR): the percentile bootstrap over items, except where
  every item scores 0 or every one 1: that bound's exact binomial interval over the n items;
- a ratio of sums (`{"num", "den"}`: bits per byte over documents, instructions followed over
  prompts), optionally through `exp` (perplexity): the percentile bootstrap over items, which keeps
  the items' correlation (the tokens of a document, the instructions of a prompt) that a per-token
  or per-instruction interval would ignore.
The standard error: for a proportion and a mean, the sample standard deviation over sqrt(n) (n - 1 in
the variance, as lm-evaluation-harness's `_stderr`); for a ratio of sums, the delta-method (linearised)
one, sqrt(sum((num_i - r den_i)^2) / (n (n - 1))) / mean(den), not a standard deviation of any scores;
through `exp`, that times exp(r) (the delta method again).
Bootstraps use a fixed seed, so the same scores always give the same interval.
"""

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


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
    """f(sum num / sum den) (den = 1 per item: a mean) with a bootstrap interval over items."""
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
    if den is not None and transform is None and _counts_at_a_bound(num_a, den_a):
        # Every item passed none (or all) of its parts: every resample gives the same rate, and the
        # bootstrap's interval would be that one point. The exact binomial over the items holds
        # instead: the items are the independent draws, their parts are correlated within them.
        k = 0 if num_a.sum() == 0 else n
        method = "clopper-pearson over items (every item at 0 or 1: the bootstrap has no spread)"
        return Estimate(float(r), stderr, clopper_pearson(k, n), n, method)
    if den is None and transform is None and _scores_at_a_bound(num_a):
        # A mean of [0, 1] scores (reciprocal rank, ROUGE-L, nDCG) that every item has at 0, or every one
        # at 1: the bootstrap's interval was that one point ([1, 1] for MRR over 2 queries, beside hit@1's
        # [0.16, 1] on the same ones). Items all at a bound are n passes (or n failures) of the exact
        # binomial, whose interval is the one a score between them cannot narrow.
        k = 0 if num_a.sum() == 0 else n
        method = "clopper-pearson over items (every item scores 0, or every one 1: the bootstrap has no spread)"
        return Estimate(float(r), stderr, clopper_pearson(k, n), n, method)
    lo, hi = percentile_interval(bootstrap_ratios(num_a, den_a, resamples, seed))
    kind = "mean" if den is None else "ratio of sums"
    return Estimate(
        float(f(r)),
        stderr,
        (float(f(lo)), float(f(hi))),
        n,
        f"bootstrap-percentile ({kind}, {resamples} resamples over items)",
    )


def _scores_at_a_bound(scores: np.ndarray) -> bool:
    """Every item's score 0, or every one 1: the two bounds of the [0, 1] scores a mean is taken of here."""
    return bool(np.all(scores == 0.0) or np.all(scores == 1.0))


def _counts_at_a_bound(num: np.ndarray, den: np.ndarray) -> bool:
    """Counts of parts passed out of parts (whole numbers, 0 <= num <= den), all at 0 or all at den."""
    counts = np.all(num == np.round(num)) and np.all(den == np.round(den)) and np.all((num >= 0) & (num <= den))
    return bool(counts) and (num.sum() == 0 or bool(np.all(num == den)))


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
    error adds the groups' variances, which are independent."""
    parts = [ratio(num, den, resamples=resamples, seed=seed) for num, den in groups]
    k = len(groups)
    if k > 1 and all(p.n == 1 for p in parts):
        # One item per group: resampling inside a group cannot vary, and the stratified interval would
        # be a point. The groups are then what varies: they are resampled instead.
        values = np.asarray([p.value for p in parts])
        draws = values[np.random.default_rng(seed).integers(0, k, size=(resamples, k))].mean(1)
        return Estimate(
            float(values.mean()),
            float(values.std(ddof=1) / math.sqrt(k)),
            percentile_interval(draws),
            k,
            f"bootstrap-percentile over groups (one item each, {resamples} resamples)",
        )
    draws = [
        bootstrap_ratios(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64), resamples, seed + g + 1)
        for g, (num, den) in enumerate(groups)
    ]
    stderrs = [p.stderr for p in parts]
    stderr = None if None in stderrs else math.sqrt(sum(s * s for s in stderrs)) / k
    return Estimate(
        sum(p.value for p in parts) / k,
        stderr,
        percentile_interval(np.mean(draws, axis=0)),
        sum(p.n for p in parts),
        f"bootstrap-percentile (stratified by group, {resamples} resamples)",
    )
