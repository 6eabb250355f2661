"""The console, and the table of validation before vs. after a stage."""

import math
import re

from rich.console import Console
from rich.table import Table

from chipadapt.errors import ChipadaptError
from chipadapt.eval.intervals import FEWEST_FOR_AN_INTERVAL, NOT_GIVEN
from chipadapt.io.lock import is_secondary_rank


def first_process() -> bool:
    """Whether this process is global rank 0 of its run (or its only process): the one that prints the
    run's plan and results. Lightning's own launcher (trainer=ddp without torchrun) reruns the script
    for every other process with LOCAL_RANK set, as torchrun and srun set RANK and SLURM_PROCID; each
    printed the results table again. A launch the rank rule refuses (mpirun without mpi4py) counts as first
    here: this module builds its console on import, where a refusal would be a traceback; cli.run_job refuses
    it in one line before any work."""
    try:
        return not is_secondary_rank()
    except ChipadaptError:
        return True


console = Console(quiet=not first_process())  # the other processes print nothing of it
if not (console.is_terminal or console.is_jupyter):  # piped or redirected: whole names, not cut at 80 columns
    console.width = 1000


def while_running() -> dict:
    """Arguments of a progress bar shown only while its work runs (rich's `transient`), and not at all
    where no terminal shows it: there rich would leave an empty line on stdout for it, beside a
    one-line error too."""
    return {"transient": True, "disable": not (console.is_terminal or console.is_jupyter), "console": console}


def number(value) -> float:
    """A figure as a float; null (non-finite in a strict-JSON manifest) as NaN."""
    return math.nan if value is None else float(value)


def interval_ends(ci: list) -> tuple[float, float]:
    """An interval's ends; null (a manifest's non-finite end: strict JSON) is unbounded."""
    low, high = ci
    return -math.inf if low is None else float(low), math.inf if high is None else float(high)


# FEWEST_FOR_AN_INTERVAL (eval/intervals.py): the draws a sign-flip or exact paired test needs before it
# can reject any value at 95% (6: 2 / 2**5 > 0.05). Over fewer the interval is (-inf, +inf): the honest
# answer, printed as too few, not as numbers. Importers read it from here too.


def unbounded(ci: list | tuple | None) -> bool:
    """Both ends of an interval unbounded (null in a manifest, or infinite): no interval was given."""
    return bool(ci) and all(end is None or math.isinf(end) for end in ci)


# NOT_GIVEN ("interval n/a:", eval/intervals.py): how no_interval's text, and a `_ci_method` without an
# interval, begin.


def no_interval(n: int | None, unit: str = "") -> str:
    """What a table prints for an interval unbounded at both ends (see unbounded), in place of
    `[-inf, +inf]`: `(interval n/a: n=4, too few)` where n is below FEWEST_FOR_AN_INTERVAL, with
    `unit` what n counts where not items (`n=4 groups, too few`: items drawn by whole groups, where
    the groups are the draws). In parentheses: rich would read `[n/a ...]` as a markup tag and print
    nothing."""
    if n is not None and n < FEWEST_FOR_AN_INTERVAL:
        return f"({NOT_GIVEN} n={n}{f' {unit}' if unit else ''}, too few)"
    return f"({NOT_GIVEN} unbounded)"


def bracketed(low, high, n: int | None, end=lambda x: f"{x:.3f}", unit: str = "") -> str:
    """`[low, high]`, each end written by `end` (an unbounded end, infinite or null in a manifest, as
    -inf/+inf); where both ends are unbounded, no_interval(n, unit) instead: a report reads
    `(interval n/a: n=4, too few)`, not `[-inf, +inf]`."""
    if unbounded((low, high)):
        return no_interval(n, unit)
    ends = [
        end(float(x)) if x is not None and math.isfinite(x) else side for x, side in ((low, "-inf"), (high, "+inf"))
    ]
    return f"[{ends[0]}, {ends[1]}]"


def why_no_interval(method) -> str:
    """`(interval n/a: n=4 groups, too few)`: the first clause of a `_ci_method` that says why a figure carries
    no interval (a training run's split over too few groups, modules/val_figures.py); "" for any other."""
    return f"({method.split(';')[0]})" if isinstance(method, str) and method.startswith(NOT_GIVEN) else ""


# How a split's `_ci_method` counts the groups its interval is over (modules/val_figures.py): a table reads
# the count back from it where no paired change carries `groups` (no validation before training).
GROUPS_OF = "{groups} groups of the {n} items"


def groups_of(figures: dict, name: str) -> int | None:
    """The groups `name`'s interval in `figures` is over (GROUPS_OF in its `_ci_method`); None for items."""
    method = figures.get(f"{name}_ci_method")
    found = re.search(GROUPS_OF.format(groups=r"(\d+)", n=r"\d+"), method) if isinstance(method, str) else None
    return int(found.group(1)) if found else None


def with_interval(figures: dict, name: str, digits: int) -> str:
    """`4.7452 [4.6101, 4.8803]`: a value and its 95% interval where the figures carry one; where they
    carry none and their `_ci_method` says why (`interval n/a: n=4 groups, too few; ...`, a training
    run's split over too few groups, modules/val_figures.py), `4.7452 (interval n/a: n=4 groups, too few)`."""
    value, ci = figures[name], figures.get(f"{name}_ci")
    text = "inf" if value is None else f"{value:.{digits}f}"  # null: past the float range (ppl of a huge loss)
    if not ci or unbounded(ci):
        # an evaluation's metric over too few items carries an unbounded interval ([null, null] in
        # results.json) and a `_ci_method` saying why (eval/intervals.py)
        why = why_no_interval(figures.get(f"{name}_ci_method"))
        if why or not ci:
            return f"{text} {why}" if why else text
        return f"{text} {no_interval(figures.get(f'{name}_n'))}"
    low, high = interval_ends(ci)
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def paired_text(change: dict | None, digits: int, scale: float = 1.0, unit: str = "") -> str:
    """`-0.0123 [-0.02, -0.00512]`: after - before on the same items, with its paired 95% interval
    (`scale` turns it into a share of the value before: ppl's change in %)."""
    if not change:
        return "-"
    figure = f"{scale * number(change['difference']):+.{digits}g}{unit}"
    if unbounded(change["ci"]):
        # Over groups (eval/paired.py) the groups are the draws: too few of them, not of the items.
        groups = change.get("groups")
        return f"{figure} {no_interval(groups, 'groups') if groups else no_interval(change.get('n'))}"
    low, high = (scale * end for end in interval_ends(change["ci"]))
    # Significant digits, not decimals: a short run's change (-4.1e-05 bits/byte) is not a row of zeros.
    return f"{figure} [{low:+.{digits}g}, {high:+.{digits}g}]"


def before_after_table(before: dict[str, dict], after: dict[str, dict], change: dict[str, dict], label: str) -> Table:
    """Each split's bits per byte and perplexity before and after, each with its 95% interval over the
    held-out items, and the change as a paired comparison on the same items (`change`: stages'
    `metrics.change`, eval/paired.py's test) with its interval, p-value and verdict."""
    table = Table(
        title=f"Validation: starting model vs. after {label} (bits per byte compare across tokenizers; "
        "[95% interval] over n held-out items; changes, p and verdict of bits/byte: paired on the same items)"
    )
    columns = (
        "split",
        "n",
        "bits/byte before",
        "bits/byte after",
        "bits/byte change",
        "ppl before",
        "ppl after",
        "ppl change",
        "p",
        "verdict",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("split", "verdict") else "right")
    for split in after:
        new, old, paired = after[split], before.get(split), (change or {}).get(split) or {}
        n = paired.get("bpb", {}).get("n", new.get("bpb_n"))
        bpb = paired.get("bpb")
        if old:
            ppl_change = (
                paired_text(paired["ppl"], 2, 100 / number(paired["ppl"]["before"]), "%")
                if paired.get("ppl")
                else f"{100 * (number(new['ppl']) - number(old['ppl'])) / number(old['ppl']):+.1f}%"
            )
            cells = [with_interval(old, "bpb", 4), with_interval(new, "bpb", 4), paired_text(bpb, 3)]
            cells += [with_interval(old, "ppl", 3), with_interval(new, "ppl", 3), ppl_change]
        else:
            cells = ["-", with_interval(new, "bpb", 4), "-", "-", with_interval(new, "ppl", 3), "-"]
        p, verdict = (f"{bpb['p']:.3g}", bpb["verdict"]) if bpb else ("-", "-")
        # items drawn by whole groups (eval/paired.py); without a validation before, the split's own figures
        # say. A paired change over items (no shared group holds several) counts no groups: n is its items.
        groups = bpb.get("groups") if bpb else groups_of(new, "bpb")
        n_text = "-" if n is None else f"{n} ({groups} groups)" if groups else str(n)
        table.add_row(split, n_text, *cells, p, verdict)
    return table
