"""Two runs on the same items: the difference of a metric, its 95% interval and a p-value.

Items are matched on their id, so each model's own item difficulty cancels out (a paired test
resolves differences that two independent intervals would call overlapping).
- Pass/fail scores: McNemar's exact test. Only discordant items (one run right, the other wrong)
  carry information: given m of them, the b -> right count c is Binomial(m, 1/2) when the runs
  are equally good. The interval of the difference (c - b) / n comes from the Clopper-Pearson
  interval of that binomial's p, conditional on m; it covers 0 exactly when the two-sided
  (central) exact p-value is at least 0.05, so the interval and the p-value never disagree.
- Numbers and ratios: the paired bootstrap, resampling matched items (the same draw for both
  runs); percentile interval, and a p-value of twice the smaller share of resampled differences
  on either side of 0 (add-one corrected).
"within noise" means the interval covers 0; otherwise the second run is "higher" or "lower".
"""

from dataclasses import dataclass

import numpy as np

from chipadapt.eval.intervals import CONFIDENCE, RESAMPLES, SEED, TRANSFORMS, clopper_pearson, percentile_interval


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

    @property
    def verdict(self) -> str:
        if self.ci[0] <= 0 <= self.ci[1]:
            return "within noise"
        return "higher" if self.diff > 0 else "lower"


def mcnemar(a: list[bool], b: list[bool], confidence: float = CONFIDENCE) -> PairedDifference:
    n = len(a)
    gained = sum(1 for x, y in zip(a, b) if not x and y)  # wrong in a, right in b
    lost = sum(1 for x, y in zip(a, b) if x and not y)
    m = gained + lost
    pa, pb = sum(map(bool, a)) / n, sum(map(bool, b)) / n
    if m == 0:
        return PairedDifference(pa, pb, 0.0, (0.0, 0.0), 1.0, n, "mcnemar-exact", 0)
    from scipy.stats import binom  # slow to import: only when a test is run

    p = min(1.0, 2 * min(float(binom.cdf(gained, m, 0.5)), float(binom.sf(gained - 1, m, 0.5))))
    lo, hi = clopper_pearson(gained, m, confidence)
    ci = (m / n * (2 * lo - 1), m / n * (2 * hi - 1))
    return PairedDifference(pa, pb, (gained - lost) / n, ci, p, n, "mcnemar-exact", m)


def paired_bootstrap(
    a_num,
    a_den,
    b_num,
    b_den,
    transform: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    chunk: int = 256,
) -> PairedDifference:
    """f(sum b_num / sum b_den) - f(sum a_num / sum a_den) over the same resampled items."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (a_num, a_den, b_num, b_den)]
    a_num, a_den, b_num, b_den = arrays
    n = len(a_num)
    f = TRANSFORMS[transform]
    stat_a, stat_b = float(f(a_num.sum() / a_den.sum())), float(f(b_num.sum() / b_den.sum()))
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        diffs.append(
            f(b_num[idx].sum(1) / np.maximum(b_den[idx].sum(1), 1e-300))
            - f(a_num[idx].sum(1) / np.maximum(a_den[idx].sum(1), 1e-300))
        )
    diffs = np.concatenate(diffs)
    # Add-one (Davison & Hinkley): a bootstrap never gives p = 0, only p below 2 / (resamples + 1).
    p = min(1.0, 2 * (min(int((diffs <= 0).sum()), int((diffs >= 0).sum())) + 1) / (len(diffs) + 1))
    return PairedDifference(stat_a, stat_b, stat_b - stat_a, percentile_interval(diffs), p, n, "paired-bootstrap")


def _num_den(values: list) -> tuple[list[float], list[float], str | None]:
    if all(isinstance(v, dict) for v in values):
        return [v["num"] for v in values], [v["den"] for v in values], values[0].get("transform")
    return [float(v) for v in values], [1.0] * len(values), None


def matched_scores(a_items: dict[str, dict], b_items: dict[str, dict], metric: str) -> tuple[list, list]:
    """`metric`'s scores in both runs on the items both scored ({id: item}), in the same order."""
    ids = [
        i
        for i in a_items
        if i in b_items
        and a_items[i]["scores"].get(metric) is not None
        and b_items[i]["scores"].get(metric) is not None
    ]
    return [a_items[i]["scores"][metric] for i in ids], [b_items[i]["scores"][metric] for i in ids]


def paired_difference(a_items: dict[str, dict], b_items: dict[str, dict], metric: str) -> PairedDifference | None:
    """The difference b - a of `metric` on the items both runs scored ({id: item}); None when they share none."""
    a, b = matched_scores(a_items, b_items, metric)
    if not a:
        return None
    if all(isinstance(v, bool) for v in a + b):
        return mcnemar(a, b)
    (a_num, a_den, a_tf), (b_num, b_den, b_tf) = _num_den(a), _num_den(b)
    if a_tf != b_tf:
        raise ValueError(f"{metric}: the runs score it differently ({a_tf} vs {b_tf})")
    return paired_bootstrap(a_num, a_den, b_num, b_den, a_tf)


def paired_mean_of_ratios(
    groups: list[tuple[list[float], list[float], list[float], list[float]]],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """b - a of an unweighted mean of per-group ratios of sums (corpus_ppl's domain_mean.bpb: one
    ratio per corpus source), each group given as (a_num, a_den, b_num, b_den) over its matched items.
    Items are resampled within their group, the same draw for both runs (a stratified paired bootstrap)."""
    k = len(groups)
    arrays = [[np.asarray(x, dtype=np.float64) for x in group] for group in groups]
    stat_a = sum(a_num.sum() / a_den.sum() for a_num, a_den, _, _ in arrays) / k
    stat_b = sum(b_num.sum() / b_den.sum() for _, _, b_num, b_den in arrays) / k
    rng = np.random.default_rng(seed)
    diffs = np.zeros(resamples)
    for a_num, a_den, b_num, b_den in arrays:
        idx = rng.integers(0, len(a_num), size=(resamples, len(a_num)))
        diffs += (b_num[idx].sum(1) / np.maximum(b_den[idx].sum(1), 1e-300)) - (
            a_num[idx].sum(1) / np.maximum(a_den[idx].sum(1), 1e-300)
        )
    diffs /= k
    p = min(1.0, 2 * (min(int((diffs <= 0).sum()), int((diffs >= 0).sum())) + 1) / (len(diffs) + 1))
    n = sum(len(group[0]) for group in arrays)
    return PairedDifference(
        stat_a, stat_b, stat_b - stat_a, percentile_interval(diffs), p, n, "paired-bootstrap (stratified by group)"
    )


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
