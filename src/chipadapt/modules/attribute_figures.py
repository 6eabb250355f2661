"""The attribute model's figures for one attribute on the held-out conversations labelled with it:
MAE and the constant-mean baseline's MAE, each with its 95% interval over the conversations
(eval/intervals.py: the percentile bootstrap of a mean), the two compared on the same conversations
(eval/paired.py: model minus baseline, the exact permutation test up to 16 conversations, the paired
bootstrap above), and Spearman's rho with its Fisher-z interval, or None and why (eval/correlation.py).
The keys follow evaluate.py's results (`mae`, `mae_ci`, `mae_n`, ...).

Conversations held out together (`groups`: OASST's threads of one message tree share their first turns
and raters) are no independent draws: 118 threads from 16 trees are closer to 16 draws than to 118. Where
the held-out set has groups of several conversations, every interval resamples groups (a cluster
bootstrap): MAE as a ratio of each group's summed error over its count, the paired test on those sums,
Spearman's rho by the percentile of rho over resampled groups. `groups` is said next to `n`."""

import numpy as np

from chipadapt.eval.correlation import spearman
from chipadapt.eval.intervals import RESAMPLES, SEED, percentile_interval, ratio
from chipadapt.eval.items import metric_fields
from chipadapt.eval.paired import paired_bootstrap

# Logged per attribute as val/<attribute>/<name> (what optimized_metric may name); Spearman only where defined.
LOGGED = ("mae", "baseline_mae", "spearman", "n")


CLUSTER_METHOD = "cluster bootstrap over groups (percentile)"


def _by_group(values: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(index, weights=values, minlength=n_groups)


def cluster_spearman_interval(p: np.ndarray, y: np.ndarray, index: np.ndarray, n_groups: int) -> tuple | None:
    """95% percentile interval of Spearman's rho over resampled groups (each drawn group's conversations
    together); None where too few resamples have a defined rho."""
    members = [np.flatnonzero(index == g) for g in range(n_groups)]
    rng = np.random.default_rng(SEED)
    rhos = []
    for _ in range(RESAMPLES):
        rows = np.concatenate([members[g] for g in rng.integers(0, n_groups, size=n_groups)])
        rho = spearman(p[rows], y[rows]).value
        if rho is not None:
            rhos.append(rho)
    return percentile_interval(np.asarray(rhos)) if len(rhos) >= RESAMPLES // 2 else None


def attribute_figures(predicted, labels, baseline: float, groups=None) -> dict:
    """Figures of predictions against labels (1-D, the same conversations) and the baseline's constant.
    `groups`: each conversation's group (held out together); None or all distinct: each its own."""
    p, y = np.asarray(predicted, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    model_err, base_err = np.abs(p - y), np.abs(baseline - y)
    index = np.unique(np.asarray(groups), return_inverse=True)[1] if groups is not None else np.arange(len(y))
    n_groups = int(index.max()) + 1 if len(y) else 0
    clustered = n_groups < len(y)
    figures: dict = {"n": len(y), "groups": n_groups}
    if clustered:
        counts = _by_group(np.ones_like(y), index, n_groups)
        model_sum, base_sum = _by_group(model_err, index, n_groups), _by_group(base_err, index, n_groups)
        figures |= metric_fields("mae", ratio(model_sum.tolist(), counts.tolist()))
        figures |= metric_fields("baseline_mae", ratio(base_sum.tolist(), counts.tolist()))
        paired = paired_bootstrap(base_sum, counts, model_sum, counts)
    else:
        figures |= metric_fields("mae", ratio(model_err.tolist()))
        figures |= metric_fields("baseline_mae", ratio(base_err.tolist()))
        ones = np.ones_like(y)
        paired = paired_bootstrap(base_err, ones, model_err, ones)
    figures["mae_minus_baseline"] = {
        "difference": paired.diff,  # below 0: the model's errors are smaller than the baseline's
        "ci": list(paired.ci),
        "p": paired.p,
        "n": paired.n,
        "test": paired.test,
        "verdict": paired.verdict,
    }
    rho = spearman(p, y)
    ci, method = rho.ci, rho.method
    if clustered and rho.value is not None:
        ci, method = cluster_spearman_interval(p, y, index, n_groups), CLUSTER_METHOD
    figures |= {
        "spearman": rho.value,
        "spearman_ci": list(ci) if ci else None,
        "spearman_ci_method": method,
    }
    if rho.undefined:
        figures["spearman_undefined"] = rho.undefined
    return figures


def interval_text(value: float | None, ci, signed: bool = False) -> str:
    """`0.412 [0.301, 0.530]`; an unbounded end as -inf/+inf; `undefined` for None."""
    if value is None:
        return "undefined"
    form = "{:+.3f}" if signed else "{:.3f}"
    if not ci:
        return form.format(value)
    ends = [
        form.format(end) if end is not None and np.isfinite(end) else ("-inf" if i == 0 else "+inf")
        for i, end in enumerate(ci)
    ]
    return f"{form.format(value)} [{ends[0]}, {ends[1]}]"
