"""Verdicts from paired tests, not from thresholds: a finding reproduces when the 95% interval of the
paired difference excludes zero in the paper's direction, contradicts it when it excludes zero the
other way, and is otherwise not resolved at this size, with how many items (or tokens) would resolve
a difference as large as the one seen."""

import math

from chipadapt.eval.paired import PairedDifference

REPRODUCES, CONTRADICTS, NOT_RESOLVED, NOT_MEASURED = (
    "reproduces",
    "contradicts",
    "not resolved at this size",
    "not measured",
)


def items_needed(d: PairedDifference) -> int | None:
    """Items for the interval's half-width to shrink below |difference| (it falls as 1/sqrt(n));
    None when the difference is zero (no size resolves it)."""
    half = (d.ci[1] - d.ci[0]) / 2
    if d.diff == 0 or half <= 0:
        return None
    return max(d.n + 1, math.ceil(d.n * (half / abs(d.diff)) ** 2))


def verdict(d: PairedDifference | None, paper_sign: int, unit: str = "items", per_item: float = 1.0) -> tuple[str, str]:
    """(verdict, why) for a paired difference b - a whose sign the paper predicts (+1: b higher, -1:
    b lower). `per_item` converts items to the unit named (e.g. tokens per document)."""
    if d is None:
        return NOT_MEASURED, "no per-item records to pair"
    low, high = d.ci
    if low > 0 or high < 0:
        agrees = (d.diff > 0) == (paper_sign > 0)
        return (REPRODUCES if agrees else CONTRADICTS), ""
    needed = items_needed(d)
    if needed is None:
        return NOT_RESOLVED, f"no difference on {d.n} items"
    return (
        NOT_RESOLVED,
        f"a difference of {d.diff:+.3g} needs about {needed * per_item:,.0f} {unit} to resolve "
        f"({d.n * per_item:,.0f} here)",
    )
