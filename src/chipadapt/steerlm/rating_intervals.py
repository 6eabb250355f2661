"""95% intervals of mean attribute ratings (SteerLM's 0-4 scale), and of the paired difference of two.

eval/intervals.py's `ratio` is for [0, 1] scores: where every item is at 0 (or 1) it gives the exact
binomial interval of a proportion, [0, 0.46] on 6 items, which on a 0-4 rating is no interval of
anything, while bootstrap's figures said "bootstrap over prompts". A mean rating has the percentile
bootstrap over its independent units (the prompts of a bootstrap round, the conversations of an
annotation); where all n are equal the bootstrap has no spread, and its [v, v] is said to be that,
as evaluate.py says of its own fallback, rather than made to look like an interval."""

import numpy as np

from chipadapt.eval.intervals import RESAMPLES, SEED, bootstrap_ratios, percentile_interval
from chipadapt.eval.paired import paired_bootstrap


def mean_with_interval(values, unit: str) -> dict | None:
    """{mean, ci, n, ci_method} of `values`, one per independent `unit` (e.g. "prompt"); None for none."""
    values = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=np.float64)
    n = len(values)
    if n == 0:
        return None
    mean = float(values.mean())
    if np.all(values == values[0]):
        method = f"degenerate: all {n} ratings equal (one per {unit}: the bootstrap has no spread)"
        return {"mean": mean, "ci": [mean, mean], "n": n, "ci_method": method}
    ci = percentile_interval(bootstrap_ratios(values, np.ones_like(values), RESAMPLES, SEED))
    method = f"bootstrap-percentile over {unit}s ({RESAMPLES} resamples)"
    return {"mean": mean, "ci": list(ci), "n": n, "ci_method": method}


def paired_difference(first, this) -> dict:
    """`this` minus `first` (means over the same units), its interval, p, test and verdict."""
    first, this = np.asarray(first, dtype=np.float64), np.asarray(this, dtype=np.float64)
    n = len(first)
    if np.all(first == this):
        return {
            "difference": 0.0,
            "ci": [0.0, 0.0],
            "p": 1.0,
            "n": n,
            "test": f"degenerate: all {n} paired differences 0 (no spread to test)",
            "verdict": "within noise",
        }
    ones = np.ones(n)
    d = paired_bootstrap(first, ones, this, ones)
    return {"difference": d.diff, "ci": list(d.ci), "p": d.p, "n": d.n, "test": d.test, "verdict": d.verdict}


def shown(figure: dict | None) -> str:
    """`0.242 [0.180, 0.301] (n 6)` for a log line."""
    if figure is None:
        return "none"
    return f"{figure['mean']:.3f} [{figure['ci'][0]:.3f}, {figure['ci'][1]:.3f}] (n {figure['n']})"
