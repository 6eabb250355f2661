"""Verdicts from paired tests, not from thresholds: a finding reproduces when the 95% interval of the
paired difference excludes zero in the paper's direction, contradicts it when it excludes zero the
other way, and is otherwise not resolved at this size; that verdict cell says how many items (and,
for documents, tokens) would resolve a difference as large as the one seen."""

import math

from chipadapt.eval.paired import MCNEMAR, MIN_DISCORDANT, PairedDifference
from chipadapt.reproduce.report.pairs import NotPaired

REPRODUCES, CONTRADICTS, NOT_RESOLVED, NOT_MEASURED = (
    "reproduces",
    "contradicts",
    "not resolved at this size",
    "not measured",
)
# A percentile bootstrap over fewer items has almost nothing to resample: its "interval" is not one
# (one document resampled is the same document every time, a zero-width interval). Kept for results
# written before the permutation tests replaced it (test "paired-bootstrap..."); no test run now is one.
MIN_RESAMPLED = 10
# Items the exact paired permutation test needs before it can reject at 5%: all n one way gives
# p = 2 / 2**n, below 0.05 from 6 items on (over fewer, its interval is unbounded).
MIN_EXACT = 6
NEEDS = ", needs "  # joins NOT_RESOLVED and the size that would resolve it, in a verdict cell
NOT_RUN = "not run"  # the variant has no step that measures the finding


Z95 = 1.959964


def items_needed(d: PairedDifference) -> int | None:
    """Items for the interval's half-width to shrink below |difference| (it falls as 1/sqrt(n));
    None when the difference is zero (no size resolves it). If the true difference is the one seen,
    that many items resolve it about half the time; twice as many give about 80% power.
    For McNemar the per-item variance of the difference (discordant share minus the squared difference)
    sizes it instead (Tango's interval is lopsided with few discordant items, and its half-width would
    overstate the size), and the items must hold at least MIN_DISCORDANT discordant ones at the rate seen."""
    half = (d.ci[1] - d.ci[0]) / 2
    if d.diff == 0 or half <= 0:
        return None
    if d.test == MCNEMAR and d.discordant:
        variance = d.discordant / d.n - d.diff**2
        needed = max(math.ceil(Z95**2 * variance / d.diff**2), math.ceil(MIN_DISCORDANT * d.n / d.discordant))
    else:
        needed = math.ceil(d.n * (half / abs(d.diff)) ** 2)
    return max(d.n + 1, needed)


def size(n: float, unit: str, per_item: float | None) -> str:
    """'240 documents / 96,000 tokens': n items, and in tokens where `per_item` gives tokens per item."""
    return f"{n:,.0f} {unit}" + (f" / {n * per_item:,.0f} tokens" if per_item else "")


def not_paired_why(d: NotPaired | None) -> str:
    """The why-cell of a comparison with no difference: the steps' items are not the same items, or there
    are no per-item records."""
    return f"not paired: {d.reason}" if isinstance(d, NotPaired) else "no per-item records to pair"


def verdict(
    d: PairedDifference | NotPaired | None, paper_sign: int, unit: str = "items", per_item: float | None = None
) -> tuple[str, str]:
    """(verdict cell, why) for a paired difference b - a whose sign the paper predicts (+1: b higher, -1:
    b lower). `unit` names the items (prompts, documents); `per_item`, where given, is tokens per item
    (documents of very different lengths), so the size that would resolve it is also given in tokens.
    A bootstrap over fewer than MIN_RESAMPLED items (older results) resolves nothing, whatever its interval;
    a permutation test over fewer than MIN_EXACT has an unbounded interval. Items that
    are not the same items (NotPaired) are "not measured", with the reason."""
    if not d:
        return NOT_MEASURED, not_paired_why(d)
    if d.test.startswith("paired-bootstrap") and d.n < MIN_RESAMPLED:
        return (
            f"{NOT_RESOLVED}{NEEDS}at least {size(MIN_RESAMPLED, unit, per_item)}",
            f"only {d.n} {unit} to resample: a bootstrap over so few gives no interval",
        )
    if not (math.isfinite(d.ci[0]) and math.isfinite(d.ci[1])):  # the exact test over 5 items or fewer
        return (
            f"{NOT_RESOLVED}{NEEDS}at least {size(MIN_EXACT, unit, per_item)}",
            f"only {d.n} {unit}: with so few, no paired test can tell a difference from noise",
        )
    if d.verdict != "within noise":
        agrees = (d.diff > 0) == (paper_sign > 0)
        return (REPRODUCES if agrees else CONTRADICTS), ""
    needed = items_needed(d)
    if needed is None:
        return NOT_RESOLVED, f"no difference at all over {d.n} {unit}"
    why = (
        f"only {d.discordant} of {d.n} {unit} tell the two apart (at least {MIN_DISCORDANT} are needed)"
        if d.too_few_discordant and not d.ci[0] <= 0 <= d.ci[1]
        else d.note or f"the 95% interval covers 0: a difference of {d.diff:+.3g} over {size(d.n, unit, per_item)}"
    )
    return f"{NOT_RESOLVED}{NEEDS}about {size(needed, unit, per_item)}", why


def is_not_resolved(cell: str) -> bool:
    return cell.startswith(NOT_RESOLVED)


def needed_size(cell: str) -> str | None:
    """'about 240 documents / 96,000 tokens' from a 'not resolved' cell; None when it names no size."""
    if not is_not_resolved(cell):
        return None
    return cell.partition(NEEDS)[2] or None


def joined(*parts: str) -> str:
    """A why-cell of several reasons, the empty ones left out."""
    return "; ".join(p for p in parts if p)
