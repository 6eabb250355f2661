"""Paired tests of one merge against another on every metric of the suite, item by item.

IFEval is compared on the prompts that chose no setting (all prompts minus the screening's): a
setting picked for scoring well on some prompts scores too well on them, and ChipAlign's lambda and
each baseline's setting were picked on the same ones. Domain bpb is corpus_ppl's domain_all.bpb, every
held-out domain document pooled, compared by the paired permutation test over documents (runs from before
it: domain_mean.bpb, items swapped within each source; report/domain_bpb.py); WikiText-2 is not part of it."""

import math
from pathlib import Path

from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.paired import PairedDifference, paired_difference
from chipadapt.reproduce.choices import ifeval_gap
from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.merge_runs import DOMAIN, INSTRUCT, Run
from chipadapt.reproduce.report.pairs import NotPaired, paired_or_why, same_run_items
from chipadapt.reproduce.report.power import Z95

# Baselines swept over lambda as ChipAlign is: at the same lambda the two differ by the method alone.
INTERPOLATIONS = ("linear", "slerp")


def signed(x: float) -> str:
    """A difference with its sign, small ones in scientific notation rather than as +0.000."""
    return f"{x:+.3f}" if x == 0 or abs(x) >= 0.001 else f"{x:+.1e}"


def items(folder: Path, task: str) -> dict[str, dict] | None:
    path = items_file(folder, task)
    return read_items(path) if path.is_file() else None


def compare(
    found: tuple[dict, dict] | NotPaired | None, key: str, exclude_ifeval: frozenset[str]
) -> PairedDifference | NotPaired | None:
    """b - a of 'task.metric' on the items both runs scored (IFEval: less the prompts `exclude_ifeval`),
    `found` being the two runs' items of the task that are the same items (pairs.same_run_items); None
    when either run has no per-item records of it, NotPaired when they are not the same items."""
    if not found:
        return found
    a_items, b_items = found
    task, _, metric = key.partition(".")
    if key == DOMAIN:
        return paired_or_why(domain_bpb.paired, a_items, b_items)
    if task == "ifeval" and exclude_ifeval:
        a_items = {i: item for i, item in a_items.items() if i not in exclude_ifeval}
    return paired_or_why(paired_difference, a_items, b_items, metric)


def compare_suite(
    a: Run, b: Run, keys: list[str], exclude_ifeval: frozenset[str] = frozenset()
) -> dict[str, PairedDifference | NotPaired | None]:
    """b - a of each metric (runs a and b), each task's items read once and checked to be the same items
    (pairs.same_run_items) over every item, the screening prompts too: which prompts chose a setting does
    not change whether two runs scored the same ones."""
    found = {}
    for task in {key.partition(".")[0] for key in keys}:
        a_side, b_side = ((run.name, run.folder_for(task), items(run.folder_for(task), task)) for run in (a, b))
        found[task] = same_run_items(task, a_side, b_side)
    return {key: compare(found[key.partition(".")[0]], key, exclude_ifeval) for key in keys}


def same_lambda(
    merged: list[Run], baselines: dict[str, Run], best: Run | None, exclude_ifeval: frozenset[str]
) -> dict[str, dict]:
    """ChipAlign's sweep job at each interpolation baseline's chosen lambda against that baseline, where
    the lambda differs from ChipAlign's own choice: ChipAlign's grid is finer than the screening's, so
    best against best also compares lambdas; this pair compares the methods alone. {method: {"lam": x,
    metric: b - a}} with the baseline as a, on IFEval (held-out prompts) and domain bpb, the two measures
    the sweep scored."""
    found = {}
    for method, run in baselines.items():
        if method not in INTERPOLATIONS or run.lam is None or best is None or abs(run.lam - best.lam) < 1e-9:
            continue
        twin = next((r for r in merged if abs(r.lam - run.lam) < 1e-9), None)
        if twin is not None:
            keys = ["ifeval.prompt_loose", "ifeval.instruction_loose", DOMAIN]
            found[method] = {"lam": run.lam, **compare_suite(run, twin, keys, exclude_ifeval)}
    return found


def ends_ifeval_gap(instruct: Run | None, chip: Run | None) -> float | None:
    """merge_balance's IFEval scale from the ends' own records (None without both)."""
    a, c = (items(run.folder, "ifeval") if run else None for run in (instruct, chip))
    return ifeval_gap(a, c) if a and c else None


def balance_difference(
    ifeval: PairedDifference | NotPaired | None,
    domain: PairedDifference | NotPaired | None,
    instruct: tuple[float, float],
    chip: tuple[float, float],
    ifeval_scale: float | None = None,
) -> PairedDifference | NotPaired | None:
    """b - a of merge_balance (reproduce/choices.py) from the paired differences of its two measures,
    IFEval instruction-level and domain bpb, with the ends' (IFEval, bpb) on the same items: each
    measure's share of the way between the ends, halved (a measure whose ends tie counts 0, as there).
    `ifeval_scale` is the IFEval gap that divides the share, as merge_balance takes it (choices.ifeval_gap:
    the ends' over every prompt both scored); without it, the ends' gap on these items.
    The measures are scored on different items, so they vary independently: the interval is normal,
    each measure's half-width scaled by its weight and the two added in quadrature. n is the IFEval
    prompts (the documents grow with them). Where a measure is not paired (NotPaired, or None: no
    records), neither is the balance: that measure's NotPaired or None, whose reason the verdict gives."""
    if not ifeval or not domain:
        return ifeval if not ifeval else domain
    # (difference, value in a, weight, offset): share = offset + weight * value
    parts = []
    for d, end_i, end_c, sign in ((ifeval, instruct[0], chip[0], 1), (domain, instruct[1], chip[1], -1)):
        gap = ifeval_scale if sign > 0 and ifeval_scale is not None else end_i - end_c
        if abs(gap) > 1e-12:
            weight = 0.5 / gap  # IFEval: (m - chip) / gap; bpb: (instruct - m) / gap
            parts.append((d, weight, 0.5 * (-end_c if sign > 0 else end_i) / gap, sign))
    if not parts:
        return None
    a = sum(offset + sign * weight * d.a for d, weight, offset, sign in parts)
    diff = sum(sign * weight * d.diff for d, weight, _, sign in parts)
    se = math.sqrt(sum((weight * (d.ci[1] - d.ci[0]) / (2 * Z95)) ** 2 for d, weight, _, _ in parts))
    p = math.erfc(abs(diff) / se / math.sqrt(2)) if se > 0 else float(diff == 0)
    ci = (diff - Z95 * se, diff + Z95 * se)
    return PairedDifference(a, a + diff, diff, ci, p, ifeval.n, "normal, from the two paired tests")


def end_values(tests: dict[str, dict], name: str) -> tuple[float, float] | NotPaired | None:
    """An end's (IFEval instr., domain bpb) on the items it was paired on; where either measure has no
    difference, its NotPaired (the end's items are not the same items), else None."""
    by_key = tests.get(name) or {}
    ifeval, domain = by_key.get(INSTRUCT), by_key.get(DOMAIN)
    if not ifeval or not domain:
        return first_unpaired(ifeval, domain)
    return ifeval.a, domain.a


def first_unpaired(*found) -> NotPaired | None:
    """The first NotPaired among comparisons: why a figure built on them all is not measured."""
    return next((d for d in found if isinstance(d, NotPaired)), None)


def balance_between(
    ifeval: PairedDifference | NotPaired | None,
    domain: PairedDifference | NotPaired | None,
    instruct_end: tuple[float, float] | NotPaired | None,
    chip_end: tuple[float, float] | NotPaired | None,
    ifeval_scale: float | None,
) -> PairedDifference | NotPaired | None:
    """merge_tests.balance_difference where both ends were paired, else why not (first_unpaired)."""
    if not instruct_end or not chip_end:
        return first_unpaired(instruct_end, chip_end)
    return balance_difference(ifeval, domain, instruct_end, chip_end, ifeval_scale)
