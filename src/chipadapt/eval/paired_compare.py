"""compare.py's paired section: every run against the first, item by item.

For each task whose `<task>_items.jsonl` is in both run folders (beside results.json), each metric the items
score is compared on the items both runs scored and that are the same items (eval/same_items.py: an id
whose question, reference or scored text differs is left out and counted, or refused where most differ),
by eval/paired.py: McNemar for pass/fail; otherwise the exact permutation test over 16 items or fewer,
the paired bootstrap over more. Written to `compare_paired.md` and `.csv`; "within noise" only where
the difference's 95% interval covers 0 (over 5 items or fewer the exact interval is unbounded: such a
table shows [-inf, +inf]).
"""

import csv
import io
import logging
import math
from pathlib import Path

from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.paired import paired_difference
from chipadapt.eval.same_items import same_items
from chipadapt.io.atomic import write_text_atomic

log = logging.getLogger(__name__)
SUFFIX = "_items.jsonl"
COLUMNS = [
    "run",
    "against",
    "metric",
    "n",
    "first",
    "this",
    "difference",
    "ci95_lo",
    "ci95_hi",
    "p",
    "test",
    "verdict",
    "left_out",
    "first_left_out",
]


def task_items(folder: Path) -> dict[str, Path]:
    """{task: its items file} in a run folder."""
    return {f.name[: -len(SUFFIX)]: f for f in sorted(Path(folder).glob(f"*{SUFFIX}"))}


def paired_rows(runs: list[tuple[str, Path]], metrics: list[str] | None = None) -> list[dict]:
    """One row per (later run, metric): its difference from the first run. `runs` are (label, run folder)."""
    if len(runs) < 2:
        return []
    first_label, first_folder = runs[0]
    first_tasks = task_items(first_folder)
    rows = []
    for label, folder in runs[1:]:
        for task in task_items(folder):
            if task not in first_tasks:
                continue
            a, b = read_items(first_tasks[task]), read_items(items_file(folder, task))
            b, left_out = same_items(task, first_label, label, a, b)
            if left_out:
                log.warning(
                    "compare: %s: %d item(s) of %s differ from %s's with the same id; left out (first: %s)",
                    task,
                    len(left_out),
                    label,
                    first_label,
                    left_out[0],
                )
            names = dict.fromkeys(k for item in a.values() for k in item["scores"])
            for name in names:
                metric = f"{task}.{name}"
                if metrics and metric not in metrics:
                    continue
                d = paired_difference(a, b, name)
                if d is None:
                    continue
                rows.append(
                    {
                        "run": label,
                        "against": first_label,
                        "metric": metric,
                        "n": d.n,
                        "first": d.a,
                        "this": d.b,
                        "difference": d.diff,
                        "ci95_lo": d.ci[0],
                        "ci95_hi": d.ci[1],
                        "p": d.p,
                        "test": d.test,
                        "verdict": d.verdict,
                        "left_out": len(left_out),
                        "first_left_out": left_out[0] if left_out else "",
                    }
                )
    return rows


def _decimals(values: tuple[float, ...]) -> int:
    """Four decimals, or as many as show the smallest nonzero figure to two significant digits (a
    difference of 1e-5 printed as +0.0000 reads as none)."""
    small = [abs(v) for v in values if v != 0 and math.isfinite(v)]
    return min(12, max(4, 1 - math.floor(math.log10(min(small))))) if small else 4


def _signed(value: float, decimals: int) -> str:
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    text = f"{value:+.{decimals}f}"
    return "+" + text[1:] if float(text) == 0 else text  # no "-0.0000": a sign of nothing


def interval_text(diff: float, low: float, high: float) -> str:
    """`difference [low, high]` with one number of decimals for the three."""
    decimals = _decimals((diff, low, high))
    return f"{_signed(diff, decimals)} [{_signed(low, decimals)}, {_signed(high, decimals)}]"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | against | metric | n | first | this | difference [95% CI] | p | test | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['against']} | {r['metric']} | {r['n']} | {r['first']:.4g} | {r['this']:.4g} | "
            f"{interval_text(r['difference'], r['ci95_lo'], r['ci95_hi'])} | "
            f"{r['p']:.3g} | {r['test']} | {r['verdict']} |"
        )
    notes = {(r["run"], r["metric"].split(".")[0]): r for r in rows if r["left_out"]}
    for (run, task), r in notes.items():
        lines.append(
            f"\n{r['left_out']} item{'s' if r['left_out'] > 1 else ''} of {run} left out of {task}: the same id as in "
            f"{r['against']} but another item (first: {r['first_left_out']}); n counts the items compared."
        )
    return "\n".join(lines) + "\n"


def write_paired(
    runs: list[tuple[str, Path]], metrics: list[str] | None, out: Path, rows: list[dict] | None = None
) -> list[dict]:
    """The paired section of compare.py: compare_paired.{md,csv} in `out`, printed too; [] (nothing
    written) when no two runs have per-item files of the same task. `rows`: paired_rows' already
    computed (compare.py computes them first, so that runs of other items are refused before it writes)."""
    rows = paired_rows(runs, metrics) if rows is None else rows
    if not rows:
        log.info("compare: no per-item files shared by the first run and another; no paired comparison")
        return rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(out) / "compare_paired.csv", buffer.getvalue())
    text = markdown(rows)
    write_text_atomic(Path(out) / "compare_paired.md", text)
    print(f"\nPaired differences against {runs[0][0]} (same items):\n{text}")
    return rows
