"""The attribute model's figures for one attribute on the held-out conversations labelled with it:
MAE and the constant-mean baseline's MAE, each with its 95% interval over the conversations
(eval/intervals.py: the percentile bootstrap of a mean), the two compared on the same conversations
(eval/paired.py: model minus baseline, the exact permutation test up to 16 conversations, the paired
bootstrap above), and Spearman's rho with its Fisher-z interval, or None and why (eval/correlation.py).
The keys follow evaluate.py's results (`mae`, `mae_ci`, `mae_n`, ...)."""

import numpy as np

from chipadapt.eval.correlation import spearman
from chipadapt.eval.intervals import ratio
from chipadapt.eval.items import metric_fields
from chipadapt.eval.paired import paired_bootstrap

# Logged per attribute as val/<attribute>/<name> (what optimized_metric may name); Spearman only where defined.
LOGGED = ("mae", "baseline_mae", "spearman", "n")


def attribute_figures(predicted, labels, baseline: float) -> dict:
    """Figures of predictions against labels (1-D, the same conversations) and the baseline's constant."""
    p, y = np.asarray(predicted, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    model_err, base_err = np.abs(p - y), np.abs(baseline - y)
    figures: dict = {"n": len(y)}
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
    figures |= {
        "spearman": rho.value,
        "spearman_ci": list(rho.ci) if rho.ci else None,
        "spearman_ci_method": rho.method,
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
