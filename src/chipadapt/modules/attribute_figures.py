"""The attribute model's figures for one attribute on the held-out conversations labelled with it:
MAE and the constant-mean baseline's MAE, each with its 95% interval over the conversations
(eval/intervals.py: the sign-flip test of a mean inverted, none under 6 conversations), the two compared on
the same conversations (eval/paired.py: model minus baseline, the paired permutation test, exact up to 16
conversations, over random swaps above), and Spearman's rho with its Fisher-z interval, or None and why
(eval/correlation.py).
The keys follow evaluate.py's results (`mae`, `mae_ci`, `mae_n`, ...).

Conversations held out together (`groups`: OASST's threads of one message tree share their first turns
and raters) are no independent draws: 118 threads from 16 trees are closer to 16 draws than to 118. Where
the held-out set has groups of several conversations, the groups are the draws: MAE as a ratio of each
group's summed error over its count with the sign-flip interval over groups (eval/paired_groups.py), the
paired test on those sums, Spearman's rho by the percentile of rho over resampled groups (a cluster
bootstrap). Under FEWEST_FOR_AN_INTERVAL (6) groups none of them has an interval, as the paired test over
as few rejects nothing: `_ci` None and `_ci_method` saying why. `groups` is said next to `n`."""

import numpy as np

from chipadapt.eval.correlation import spearman
from chipadapt.eval.intervals import FEWEST_FOR_AN_INTERVAL, RESAMPLES, SEED, percentile_interval, ratio, too_few
from chipadapt.eval.items import metric_fields
from chipadapt.eval.paired import paired_bootstrap
from chipadapt.eval.paired_groups import ratio_over_groups

# Logged per attribute as val/<attribute>/<name> (what optimized_metric may name); Spearman only where defined.
LOGGED = ("mae", "baseline_mae", "spearman", "n")


CLUSTER_METHOD = "cluster bootstrap over groups (percentile)"


def _by_group(values: np.ndarray, index: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(index, weights=values, minlength=n_groups)


def _fields(name: str, est) -> dict:
    """metric_fields, `_ci` None where no interval was given (too few draws: both ends unbounded)."""
    fields = metric_fields(name, est)
    if fields[f"{name}_ci"] is not None and all(np.isinf(fields[f"{name}_ci"])):
        fields[f"{name}_ci"] = None
    return fields


def _over_groups(name: str, sums: np.ndarray, counts: np.ndarray, n: int) -> dict:
    """`name`'s fields as the ratio of the groups' summed errors over their counts, its interval over the
    groups (module docstring); `_n` the groups, which the method names beside the conversations."""
    k = len(sums)
    if k < FEWEST_FOR_AN_INTERVAL:
        est = ratio(sums.tolist(), counts.tolist())
        return _fields(name, est) | {f"{name}_ci": None, f"{name}_ci_method": too_few(k, f"groups of the {n} items")}
    est = ratio_over_groups(sums, counts)
    return _fields(name, est) | {f"{name}_ci_method": f"{est.method}: {k} groups of the {n} items"}


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
        figures |= _over_groups("mae", model_sum, counts, len(y))
        figures |= _over_groups("baseline_mae", base_sum, counts, len(y))
        paired = paired_bootstrap(base_sum, counts, model_sum, counts)
    else:
        figures |= _fields("mae", ratio(model_err.tolist()))
        figures |= _fields("baseline_mae", ratio(base_err.tolist()))
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
    if clustered and rho.value is not None and n_groups < FEWEST_FOR_AN_INTERVAL:
        too = too_few(n_groups, f"groups of the {len(y)} items").split(";")[0]
        ci, method = None, f"{too}; no interval over fewer than {FEWEST_FOR_AN_INTERVAL} groups, as for MAE"
    elif clustered and rho.value is not None:
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
