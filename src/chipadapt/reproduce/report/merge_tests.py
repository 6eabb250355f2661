"""Paired tests of one merge against another on every metric of the suite, item by item.

IFEval is compared on the prompts that chose no setting (all prompts minus the screening's): a
setting picked for scoring well on some prompts scores too well on them, and ChipAlign's lambda and
each baseline's setting were picked on the same ones. Domain bpb is corpus_ppl's domain_all.bpb, every
held-out domain document pooled, compared by the paired bootstrap over documents (runs from before it:
domain_mean.bpb, resampled within each source; report/domain_bpb.py); WikiText-2 is not part of it."""

import math
from pathlib import Path

from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.paired import PairedDifference, paired_difference
from chipadapt.reproduce.report import domain_bpb
from chipadapt.reproduce.report.merge_runs import DOMAIN, Run

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def signed(x: float) -> str:
    """A difference with its sign, small ones in scientific notation rather than as +0.000."""
    return f"{x:+.3f}" if x == 0 or abs(x) >= 0.001 else f"{x:+.1e}"


def items(folder: Path, task: str) -> dict[str, dict] | None:
    path = items_file(folder, task)
    return read_items(path) if path.is_file() else None


def compare(
    a_items: dict[str, dict] | None, b_items: dict[str, dict] | None, key: str, exclude_ifeval: frozenset[str]
) -> PairedDifference | None:
    """b - a of 'task.metric' on the items both runs scored (IFEval: less the prompts `exclude_ifeval`);
    None when either run has no per-item records of it."""
    task, _, metric = key.partition(".")
    if a_items is None or b_items is None:
        return None
    if key == DOMAIN:
        return domain_bpb.paired(a_items, b_items)
    if task == "ifeval" and exclude_ifeval:
        a_items = {i: item for i, item in a_items.items() if i not in exclude_ifeval}
    return paired_difference(a_items, b_items, metric)


def compare_suite(
    a: Run, b: Run, keys: list[str], exclude_ifeval: frozenset[str] = frozenset()
) -> dict[str, PairedDifference | None]:
    """b - a of each metric (runs a and b), each task's items read once."""
    tasks = {key.partition(".")[0] for key in keys}
    a_items, b_items = ({t: items(run.folder_for(t), t) for t in tasks} for run in (a, b))
    return {key: compare(a_items[t], b_items[t], key, exclude_ifeval) for key in keys for t in [key.partition(".")[0]]}


def balance_difference(
    ifeval: PairedDifference | None,
    domain: PairedDifference | None,
    instruct: tuple[float, float],
    chip: tuple[float, float],
) -> PairedDifference | None:
    """b - a of merge_balance (reproduce/choices.py) from the paired differences of its two measures,
    IFEval instruction-level and domain bpb, with the ends' (IFEval, bpb) on the same items: each
    measure's share of the way between the ends, halved (a measure whose ends tie counts 0, as there).
    The measures are scored on different items, so they vary independently: the interval is normal,
    each measure's half-width scaled by its weight and the two added in quadrature. n is the IFEval
    prompts (the documents grow with them)."""
    if ifeval is None or domain is None:
        return None
    # (difference, value in a, weight, offset): share = offset + weight * value
    parts = []
    for d, end_i, end_c, sign in ((ifeval, instruct[0], chip[0], 1), (domain, instruct[1], chip[1], -1)):
        gap = end_i - end_c
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
