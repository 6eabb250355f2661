"""compare.py's paired section: every run against the first, item by item.

For each task whose `<task>_items.jsonl` is in both run folders (beside results.json), each metric the items
score is compared on the items both runs scored and that are the same items (eval/same_items.py: an id
whose question, reference or scored text differs is left out and counted),
by eval/paired.py: McNemar for pass/fail; otherwise the exact permutation test over 16 items or fewer,
the paired bootstrap over more. Written to `compare_paired.md` and `.csv`; "within noise" only where
the difference's 95% interval covers 0 (over 5 items or fewer the exact interval is unbounded: such a
table shows [-inf, +inf]).
Only the tasks with a metric the user asked for are read (all, when none is named). A task whose items
cannot be paired (most differ, its limits differ, its items file is unreadable) is one row with the
verdict "not paired" and the reason, and one warning: the other tasks, and compare.py's tables and
plots, which need no pairing, are not held back by it. A per-token figure (perplexity's `ppl`) of runs
whose items were cut into other tokens (another tokenizer: an augmented one against the base model's)
is a "not paired" row too, with the reason; bits per byte, per the same bytes, are compared.
"""

import csv
import io
import logging
import math
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import items_file, read_items
from chipadapt.eval.paired import paired_difference
from chipadapt.eval.same_items import OTHER_TOKENIZER, other_tokens, per_token, same_items, same_settings
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.jsonl import json_object

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
    "reason",  # why a task was not paired (verdict "not paired"); blank on a compared row
]
NOT_PAIRED = "not paired"


def task_items(folder: Path) -> dict[str, Path]:
    """{task: its items file} in a run folder."""
    return {f.name[: -len(SUFFIX)]: f for f in sorted(Path(folder).glob(f"*{SUFFIX}"))}


def task_settings(folder: Path, task: str) -> dict | None:
    """The run's config of `task` (manifest.json's config.eval.<task>); None where the folder records none."""
    manifest = Path(folder) / "manifest.json"
    if not manifest.is_file():
        return None
    found = ((json_object(manifest).get("config") or {}).get("eval") or {}).get(task)
    return found if isinstance(found, dict) else None


def asked_for(task: str, metrics: list[str] | None) -> bool:
    """Whether the user asked for a metric of `task` (every task, when no metric is named)."""
    return not metrics or any(m.startswith(f"{task}.") for m in metrics)


def not_paired(label: str, first_label: str, task: str, reason: str) -> dict:
    """A "not paired" row of `task` (a task, or one metric of it), with one warning."""
    reason = reason.removeprefix(f"{task}: ")  # the row names the task already
    log.warning("compare: %s of %s not paired with %s: %s", task, label, first_label, reason)
    row = dict.fromkeys(COLUMNS, "")
    return {
        **row,
        "run": label,
        "against": first_label,
        "metric": task,
        "test": NOT_PAIRED,
        "verdict": NOT_PAIRED,
        "reason": reason,
    }


def paired_rows(runs: list[tuple[str, Path]], metrics: list[str] | None = None) -> list[dict]:
    """One row per (later run, metric): its difference from the first run; one "not paired" row per
    (later run, task) whose items cannot be compared. `runs` are (label, run folder)."""
    if len(runs) < 2:
        return []
    first_label, first_folder = runs[0]
    first_tasks = task_items(first_folder)
    rows = []
    for label, folder in runs[1:]:
        for task in task_items(folder):
            if task not in first_tasks or not asked_for(task, metrics):
                continue
            try:
                same_settings(task, first_label, label, task_settings(first_folder, task), task_settings(folder, task))
                a, b = read_items(first_tasks[task]), read_items(items_file(folder, task))
                b, left_out = same_items(task, first_label, label, a, b)
            except ChipadaptError as err:
                rows.append(not_paired(label, first_label, task, str(err)))
                continue
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
            tokens = other_tokens(task, first_label, label, a, b)
            for name in names:
                metric = f"{task}.{name}"
                if metrics and metric not in metrics:
                    continue
                if tokens and per_token(name):
                    rows.append(not_paired(label, first_label, metric, tokens))
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
                        "reason": "",
                    }
                )
    return rows


def other_tokenizer_notes(rows: list[dict]) -> list[str]:
    """compare.md's note on each per-token metric a later run does not pair on for another tokenizer:
    the plain table shows its figures side by side, which read as comparable."""
    return [
        f"{r['metric']} of {r['run']} and of {r['against']}: {OTHER_TOKENIZER}."
        for r in rows
        if r["verdict"] == NOT_PAIRED and r["reason"].startswith(OTHER_TOKENIZER)
    ]


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
    compared = [r for r in rows if r["verdict"] != NOT_PAIRED]
    for r in rows:
        if r["verdict"] == NOT_PAIRED:
            lines.append(f"| {r['run']} | {r['against']} | {r['metric']} | | | | | | | {NOT_PAIRED} (below) |")
            continue
        lines.append(
            f"| {r['run']} | {r['against']} | {r['metric']} | {r['n']} | {r['first']:.4g} | {r['this']:.4g} | "
            f"{interval_text(r['difference'], r['ci95_lo'], r['ci95_hi'])} | "
            f"{r['p']:.3g} | {r['test']} | {r['verdict']} |"
        )
    for r in rows:
        if r["verdict"] == NOT_PAIRED:
            lines.append(f"\n{r['metric']} of {r['run']}: {NOT_PAIRED} with {r['against']}: {r['reason']}")
    notes = {(r["run"], r["metric"].split(".")[0]): r for r in compared if r["left_out"]}
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
    computed (compare.py computes them before it writes anything)."""
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
