"""A validation split's figures from its item table (modules/val_items.py), in the shape evaluate.py's
results.json gives its metrics: `ppl`, `loss` and `bpb`, each with `_stderr`, `_ci` (95%), `_n` (items)
and `_ci_method`. The intervals are evaluate.py's perplexity task's: the bootstrap of the pooled ratio
over items (eval/intervals.py), since the tokens of one document are not independent. And the change
from one validation to another on the same items, as a paired test (eval/paired.py)."""

import math

import numpy as np

from chipadapt.eval.intervals import ratio
from chipadapt.eval.items import metric_fields
from chipadapt.eval.paired import paired_bootstrap
from chipadapt.modules.val_items import BYTES, ITEM, NLL, TOKENS

# Each validation split's metrics, logged as val/<split>/<metric> (what optimized_metric may name).
VAL_METRICS = ("ppl", "loss", "bpb")


def perplexity(loss: float) -> float:
    """exp(loss), inf past the float range (a diverged run's loss of 57,527 nats) instead of an
    OverflowError that ended the job, and the sweep around it."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def ratio_parts(table: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, str | None]]:
    """Each metric as per-item numerator, denominator and transform: its value is
    transform(sum numerator / sum denominator)."""
    nll = table[:, NLL]
    return {
        "ppl": (nll, table[:, TOKENS], "exp"),
        "loss": (nll, table[:, TOKENS], None),
        # Bits per byte of text: comparable across tokenizers (perplexity is per token).
        "bpb": (nll / math.log(2), table[:, BYTES], None),
    }


def split_values(table: np.ndarray) -> dict[str, float]:
    """ppl, loss and bpb of the split's pooled sums (NaN stays NaN: diverged weights must show)."""
    nll, tokens, nbytes = (float(table[:, column].sum()) for column in (NLL, TOKENS, BYTES))
    loss = nll / max(tokens, 1.0)
    return dict(zip(VAL_METRICS, (perplexity(loss), loss, nll / max(nbytes, 1.0) / math.log(2))))


def split_figures(table: np.ndarray) -> dict[str, float | list | int | str | None]:
    """The split's values, each with its interval over the items and their count."""
    values, n = split_values(table), len(table)
    figures = {}
    for name, (num, den, transform) in ratio_parts(table).items():
        if n and np.isfinite(num).all() and den.sum() > 0:
            fields = metric_fields(name, ratio(num, den, transform))
        else:  # nothing to resample: a non-finite loss (diverged weights) or no labelled token
            fields = {f"{name}_stderr": None, f"{name}_ci": None, f"{name}_n": n, f"{name}_ci_method": None}
        figures.update(fields)
        figures[name] = values[name]  # the pooled value exactly as logged (the ratio's sums add in another order)
    return figures


def paired_change(before: np.ndarray, after: np.ndarray) -> dict[str, dict] | None:
    """after - before of each metric on the items both validations scored (matched by item), as
    eval/paired.py tests it: paired bootstrap, or the exact permutation test over 16 items or fewer.
    None where they share no item or a loss is not finite."""
    shared, a_rows, b_rows = np.intersect1d(before[:, ITEM], after[:, ITEM], return_indices=True)
    if not len(shared):
        return None
    a_table, b_table = before[a_rows], after[b_rows]
    a_parts, b_parts = ratio_parts(a_table), ratio_parts(b_table)
    change = {}
    for name in VAL_METRICS:
        (a_num, a_den, transform), (b_num, b_den, _) = a_parts[name], b_parts[name]
        if not (np.isfinite(a_num).all() and np.isfinite(b_num).all()) or a_den.sum() <= 0 or b_den.sum() <= 0:
            return None
        paired = paired_bootstrap(a_num, a_den, b_num, b_den, transform)
        change[name] = {
            "before": paired.a,
            "after": paired.b,
            "difference": paired.diff,
            "ci": list(paired.ci),
            "p": paired.p,
            "n": paired.n,
            "test": paired.test,
            "verdict": paired.verdict,
        }
    return change
