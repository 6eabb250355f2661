"""A validation split's figures from its item table (modules/val_items.py), in the shape evaluate.py's
results.json gives its metrics: `ppl`, `loss` and `bpb`, each with `_stderr`, `_ci` (95%), `_n` (items)
and `_ci_method`. The intervals are evaluate.py's perplexity task's: the sign-flip test of the pooled
ratio over items inverted (eval/intervals.py; none under 6 items), since the tokens of one document are
not independent. And the change
from one validation to another on the same items, as a paired test (eval/paired.py).

Items held out together (`groups`, the datamodule's `val_groups`: an SFT conversation's OASST message tree)
are no independent draws: 28 threads of 4 trees are closer to 4 draws than to 28. Where some group holds
several items, the intervals are over whole groups (the ratio of the groups' sums, its interval the
sign-flip test over the groups inverted, eval/paired_groups.py; `_ci_method` naming the groups; `_n` still
counts the items; under FEWEST_FOR_AN_INTERVAL groups no interval at all, `_ci` None and `_ci_method`
saying so), and the change is eval/paired.py's test over groups (`test` "... over groups", `groups` beside
`n`), as compare.py pairs two runs. Without groups (DAPT's documents) every figure is over items, as before."""

import dataclasses
import functools
import math

import numpy as np

from chipadapt.eval.intervals import Estimate, ratio
from chipadapt.eval.items import metric_fields
from chipadapt.eval.paired import by_groups, group_index, paired_bootstrap
from chipadapt.eval.paired_groups import ratio_over_groups
from chipadapt.modules.val_items import BYTES, ITEM, NLL, TOKENS
from chipadapt.report import FEWEST_FOR_AN_INTERVAL, GROUPS_OF, no_interval

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


def item_groups(table: np.ndarray, groups: list | None) -> np.ndarray | None:
    """Each row's group as 0..k-1 (eval/paired.group_index) where `groups` (item -> group, the datamodule's
    val_groups of the split) puts several of the table's items in one; None otherwise. An item past the
    list is its own, as train.val_items.jsonl records it without a group (stages/validation_items.py)."""
    if not groups:
        return None
    items = table[:, ITEM].astype(int)
    return group_index([("group", groups[i]) if 0 <= i < len(groups) else ("item", i) for i in items])


def _over_groups(num: np.ndarray, den: np.ndarray, transform: str | None, index: np.ndarray) -> Estimate | None:
    """The ratio over whole groups: the ratio of the groups' sums, its interval the ratios the sign-flip
    test over the groups does not reject (eval/paired_groups.py: the percentile bootstrap used before over so
    few group sums covered 84% at 6 groups where it claimed 95%); `n` the items. None under FEWEST_FOR_AN_INTERVAL
    groups: that test then rejects no ratio, as the paired change over as few groups is unbounded
    (eval/paired.py): too few groups for an interval."""
    k = int(index.max()) + 1
    if k < FEWEST_FOR_AN_INTERVAL:
        return None
    est = ratio_over_groups(
        np.bincount(index, weights=num, minlength=k), np.bincount(index, weights=den, minlength=k), transform
    )
    method = f"{est.method}: {GROUPS_OF.format(groups=k, n=len(index))}"
    return dataclasses.replace(est, n=len(index), method=method)


def too_few_groups(name: str, index: np.ndarray) -> dict:
    """A metric's fields without an interval over too few groups (_over_groups): no `_ci` nor `_stderr`
    (as unreliable over so few draws), `_n` the items, and `_ci_method` saying why, its first clause
    what a table prints in place of the interval (report.with_interval)."""
    k = int(index.max()) + 1
    why = (
        f"{no_interval(k, 'groups')[1:-1]}; {GROUPS_OF.format(groups=k, n=len(index))}, fewer than "
        f"{FEWEST_FOR_AN_INTERVAL}: a test over {k} groups can reject no value at 95% (its smallest p, "
        f"2 / 2**{k}, is over 0.05)"
    )
    return {f"{name}_stderr": None, f"{name}_ci": None, f"{name}_n": len(index), f"{name}_ci_method": why}


def split_figures(table: np.ndarray, groups: list | None = None) -> dict[str, float | list | int | str | None]:
    """The split's values, each with its interval over the items (over their groups where `groups`, the
    item -> group list, puts several in one: module docstring) and the items' count."""
    values, n = split_values(table), len(table)
    index = item_groups(table, groups)
    figures = {}
    for name, (num, den, transform) in ratio_parts(table).items():
        if n and np.isfinite(num).all() and den.sum() > 0:
            if index is None:
                fields = metric_fields(name, ratio(num, den, transform))
            elif (est := _over_groups(num, den, transform, index)) is None:
                fields = too_few_groups(name, index)
            else:  # `_n` the items, as over items; the interval's groups are named in `_ci_method`
                fields = metric_fields(name, est) | {f"{name}_n": n}
        else:  # nothing to resample: a non-finite loss (diverged weights) or no labelled token
            fields = {f"{name}_stderr": None, f"{name}_ci": None, f"{name}_n": n, f"{name}_ci_method": None}
        figures.update(fields)
        figures[name] = values[name]  # the pooled value exactly as logged (the ratio's sums add in another order)
    return figures


def paired_change(before: np.ndarray, after: np.ndarray, groups: list | None = None) -> dict[str, dict] | None:
    """after - before of each metric on the items both validations scored (matched by item), as
    eval/paired.py tests it: the paired permutation test, exact over 16 items or fewer, over random swaps above; over
    whole groups where `groups` (item -> group) puts several shared items in one (module docstring), the
    result then with `groups` (and `note` where every group's sums are equal, eval/paired.py).
    None where they share no item or a loss is not finite."""
    shared, a_rows, b_rows = np.intersect1d(before[:, ITEM], after[:, ITEM], return_indices=True)
    if not len(shared):
        return None
    a_table, b_table = before[a_rows], after[b_rows]
    a_parts, b_parts = ratio_parts(a_table), ratio_parts(b_table)
    index = item_groups(a_table, groups)
    change = {}
    for name in VAL_METRICS:
        (a_num, a_den, transform), (b_num, b_den, _) = a_parts[name], b_parts[name]
        if not (np.isfinite(a_num).all() and np.isfinite(b_num).all()) or a_den.sum() <= 0 or b_den.sum() <= 0:
            return None
        arrays = [a_num, a_den, b_num, b_den]
        items_test = functools.partial(paired_bootstrap, *arrays, transform)
        paired = items_test() if index is None else by_groups(arrays, index, transform, items_test)
        change[name] = {
            "before": paired.a,
            "after": paired.b,
            "difference": paired.diff,
            "ci": list(paired.ci),
            "p": paired.p,
            "n": paired.n,
            **({"groups": paired.groups} if paired.groups is not None else {}),
            "test": paired.test,
            "verdict": paired.verdict,
            **({"note": paired.note} if paired.note else {}),
        }
    return change
