"""compare.py's paired section: every run against the first, item by item (the first named with per-item
files of a task a later run has, `baseline`; a warning says which run the others pair against). A training
run's are its final validation's (`train.val_items.jsonl`, stages/validation_items.py), paired only with
another training run's, and only where both validated on the same held-out text (compare_validation.py).

For each task whose `<task>_items.jsonl` is in both run folders and named by both runs' results (a file its
results do not name was left by another evaluation in the folder: a "not paired" row), each metric the items
score is compared on the items both runs scored and that are the same items (eval/same_items.py: an id
whose question, reference or scored text differs is left out and counted),
by eval/paired.py: McNemar for pass/fail; otherwise the paired permutation test, exact over 16 items or
fewer, over seeded random swaps above. Items that carry a group (an SFT run's validation threads, by OASST
message tree) are swapped by whole groups, the test named "... over groups" and the `groups` column
(the n cell: `28 (4 groups)`) saying how many independent draws the items are; two runs that put one
item in other groups, or that write one metric in other forms (eval/paired.py's ScoresDiffer), are a
"not paired" row for that metric, with the reason; where every group's sums
are equal in both runs the items' own test stands in, the groups still counted and a footnote saying so.
Written to `compare_paired.md` and `.csv`; "within noise" only where the difference's 95% interval covers
0 (over 5 items or groups or fewer the exact interval is unbounded: such a table shows
`(interval n/a: n=4 groups, too few)`, report.no_interval).
Only the tasks with a metric the user asked for are read (all, when none is named). A task whose items
cannot be paired (most differ, settings that change what is measured differ, eval/same_items.py, its items
file is unreadable) is one row with the
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
from chipadapt.eval.compare_validation import validation_text_refusal
from chipadapt.eval.evaluated_tasks import described_tasks, manifest, same_model, task_settings
from chipadapt.eval.items import VALIDATION_TASK, items_file, metric_of, read_items
from chipadapt.eval.paired import GroupsDiffer, ScoresDiffer, paired_difference
from chipadapt.eval.same_items import OTHER_TOKENIZER, other_tokens, per_token, same_items, same_settings
from chipadapt.io.atomic import write_text_atomic
from chipadapt.report import bracketed

log = logging.getLogger(__name__)
SUFFIX = "_items.jsonl"
COLUMNS = [
    "run",
    "against",
    "metric",
    "n",
    "groups",  # the groups resampled whole where the items carry them (eval/paired.py); blank otherwise
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
    "first_only",  # McNemar's b: items right in the first run only (blank for other tests)
    "this_only",  # McNemar's c: items right in this run only
    "p_method",  # McNemar: "exact binomial" (under 25 discordant items) or "score"
    "note",  # why the verdict is not the interval's reading (few discordant items); blank where they agree
]
NOT_PAIRED = "not paired"


def task_items(folder: Path) -> dict[str, Path]:
    """{task: its items file} in a run folder."""
    return {f.name[: -len(SUFFIX)]: f for f in sorted(Path(folder).glob(f"*{SUFFIX}"))}


def run_items(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """({task: its items file} of the tasks the run's results name, [tasks whose items file is there but
    not in its results: left by another evaluation in the folder]) (eval/evaluated_tasks.py)."""
    found, described = task_items(folder), described_tasks(folder)
    if VALIDATION_TASK in found and not ((manifest(folder).get("metrics") or {}).get("after")):
        # A training run's validation file stands only beside the final validation its manifest records
        # (written first): one left by an earlier run of an overwritten folder is not this run's.
        found.pop(VALIDATION_TASK)
    if described is None:
        return found, []
    described = {*described, VALIDATION_TASK}  # a training run's own, never an evaluation's (eval/items.py)
    return {t: f for t, f in found.items() if t in described}, [t for t in found if t not in described]


def baseline(runs: list[tuple[str, Path]]) -> int | None:
    """The index of the run the others are paired against: the first named that has per-item files of
    a task its results name (an evaluation without them, or a training run from before its validation's
    file, has nothing to pair on) and shares one with a later run: a training run named before
    evaluations (its `train.val` task is no evaluation's) leaves them paired with each other."""
    tasks = [set(run_items(folder)[0]) for _, folder in runs]
    shared = (i for i, found in enumerate(tasks) if any(found & later for later in tasks[i + 1 :]))
    return next(shared, next((i for i, found in enumerate(tasks) if found), None))


def stray_reason(label: str) -> str:
    return (
        f"{label}'s per-item file of it is not in that run's results.json (left by an earlier evaluation in its "
        "folder, with settings the run does not record); evaluate the task again there, or compare the folder "
        "whose results name it"
    )


def asked_for(task: str, metrics: list[str] | None) -> bool:
    """Whether the user asked for a metric of `task` (every task, when no metric is named)."""
    if task == VALIDATION_TASK:  # its scores are named as the run's metrics: `val/domain/bpb`
        return not metrics or any(m.startswith("val/") for m in metrics)
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
    """One row per (later run, metric): its difference from the baseline run (`baseline`: the first
    named with per-item files); one "not paired" row per (later run, task) whose items cannot be
    compared. `runs` are (label, run folder)."""
    first = baseline(runs)
    if first is None or first == len(runs) - 1:
        return []
    first_label, first_folder = runs[first]
    if first > 0:
        skipped = ", ".join(label for label, _ in runs[:first])
        if any(run_items(folder)[0] for _, folder in runs[:first]):  # files of no task a later run has
            why = "the first run named with per-item files of a task a later run has (%s: none)"
        else:
            why = "the first run named with per-item files (%s has none)"
        log.warning(f"compare: paired against %s, {why}", first_label, skipped)
    first_tasks, first_stray = run_items(first_folder)
    rows = []
    for label, folder in runs[first + 1 :]:
        tasks, stray = run_items(folder)
        for task in sorted({*tasks, *stray, *first_tasks, *first_stray}):
            if not asked_for(task, metrics):
                continue
            # Said, not left out: a task only one of the two measured was a silent gap in the paired table.
            if task not in first_tasks and task not in first_stray:
                rows.append(not_paired(label, first_label, task, f"the baseline has none ({first_label})"))
                continue
            if task not in tasks and task not in stray:
                rows.append(not_paired(label, first_label, task, f"the other has none ({label})"))
                continue
            if task in stray or task in first_stray:
                rows.append(not_paired(label, first_label, task, stray_reason(label if task in stray else first_label)))
                continue
            try:
                if task == VALIDATION_TASK:  # two training runs: the same held-out text, or no pairing
                    validation_text_refusal(first_label, first_folder, label, folder)
                    notes = []
                else:
                    notes = same_settings(
                        task,
                        first_label,
                        label,
                        task_settings(first_folder, task),
                        task_settings(folder, task),
                        same_model(first_folder, folder),
                    )
                a, b = read_items(first_tasks[task]), read_items(items_file(folder, task))
                b, left_out = same_items(task, first_label, label, a, b)
            except ChipadaptError as err:
                rows.append(not_paired(label, first_label, task, str(err)))
                continue
            for note in notes:
                log.warning("compare: %s of %s paired with %s, but: %s", task, label, first_label, note)
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
                metric = metric_of(task, name)
                if metrics and metric not in metrics:
                    continue
                if per_token(name) and (tokens := other_tokens(task, first_label, label, a, b, name)):
                    rows.append(not_paired(label, first_label, metric, tokens))
                    continue
                try:
                    d = paired_difference(a, b, name)
                except (GroupsDiffer, ScoresDiffer) as err:
                    rows.append(not_paired(label, first_label, metric, str(err)))
                    continue
                if d is None:  # said, not dropped: another split or id format leaves the table a metric short
                    reason = "no item scored in both runs (another split, id format or metric)"
                    rows.append(not_paired(label, first_label, metric, reason))
                    continue
                rows.append(
                    {
                        "run": label,
                        "against": first_label,
                        "metric": metric,
                        "n": d.n,
                        "groups": d.groups if d.groups is not None else "",
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
                        "reason": "; ".join(notes),
                        **discordance(d),
                    }
                )
    return rows


def discordance(d) -> dict:
    """The row's McNemar counts, how its p was computed and the note on its verdict (blank otherwise)."""
    counts = d.first_only is not None
    return {
        "first_only": d.first_only if counts else "",
        "this_only": d.this_only if counts else "",
        "p_method": d.p_method,
        "note": d.note,
    }


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


def interval_text(diff: float, low: float, high: float, n: int | None = None, unit: str = "") -> str:
    """`difference [low, high]` with one number of decimals for the three; where both ends are
    unbounded (the exact test over 5 items or fewer), `difference (interval n/a: n=4, too few)`, with
    `unit` what n counts where not items (`n=4 groups, too few`)."""
    decimals = _decimals((diff, low, high))
    return f"{_signed(diff, decimals)} {bracketed(low, high, n, lambda end: _signed(end, decimals), unit)}"


def _p_text(r: dict) -> str:
    """The p cell; `(exact)` where McNemar's p is the exact binomial one, not the score test's that
    matches the interval."""
    return f"{r['p']:.3g}" + (" (exact)" if r.get("p_method") == "exact binomial" else "")


def _counts_text(r: dict) -> str:
    """`b / c`: items right only in the first run / only in this one (McNemar rows); blank otherwise."""
    return f"{r['first_only']} / {r['this_only']}" if r.get("first_only", "") != "" else ""


def _task_of(metric: str) -> str:
    """`ifeval` of `ifeval.prompt_loose`; `val` of a training run's `val/domain/bpb`."""
    return metric.split(".")[0].split("/")[0]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | against | metric | n | first | this | right only in first / this | difference [95% CI] | p | test "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    compared = [r for r in rows if r["verdict"] != NOT_PAIRED]
    footnotes = []
    for r in rows:
        if r["verdict"] == NOT_PAIRED:
            lines.append(f"| {r['run']} | {r['against']} | {r['metric']} | | | | | | | | {NOT_PAIRED} (below) |")
            continue
        verdict = r["verdict"]
        # the verdict is not the interval's reading, or the groups were tested item by item: the note says so
        if r.get("note"):
            footnotes.append(f"[{len(footnotes) + 1}] {r['metric']} of {r['run']}: {r['note']}.")
            verdict += f" [{len(footnotes)}]"
        # Over groups, the groups are the draws: an interval the exact test leaves unbounded is "too few" of them.
        grouped = r.get("groups") not in (None, "")
        units, unit = (r["groups"], "groups") if grouped else (r["n"], "")
        n_text = f"{r['n']} ({r['groups']} groups)" if grouped else r["n"]
        lines.append(
            f"| {r['run']} | {r['against']} | {r['metric']} | {n_text} | {r['first']:.4g} | {r['this']:.4g} | "
            f"{_counts_text(r)} | {interval_text(r['difference'], r['ci95_lo'], r['ci95_hi'], units, unit)} | "
            f"{_p_text(r)} | {r['test']} | {verdict} |"
        )
    lines += [f"\n{note}" for note in footnotes]
    for r in rows:
        if r["verdict"] == NOT_PAIRED:
            lines.append(f"\n{r['metric']} of {r['run']}: {NOT_PAIRED} with {r['against']}: {r['reason']}")
    notes = {(r["run"], _task_of(r["metric"])): r for r in compared if r["left_out"]}
    for (run, task), r in notes.items():
        lines.append(
            f"\n{r['left_out']} item{'s' if r['left_out'] > 1 else ''} of {run} left out of {task}: the same id as in "
            f"{r['against']} but another item (first: {r['first_left_out']}); n counts the items compared."
        )
    # Settings that differ where the pairing holds (paired_rows): once per run and task, loud.
    warned = {(r["run"], _task_of(r["metric"])): r for r in compared if r["reason"]}
    for (run, task), r in warned.items():
        lines.append(f"\n{task} of {run}, paired with {r['against']}, but: {r['reason']}.")
    return "\n".join(lines) + "\n"


def write_paired(
    runs: list[tuple[str, Path]], metrics: list[str] | None, out: Path, rows: list[dict] | None = None
) -> list[dict]:
    """The paired section of compare.py: compare_paired.{md,csv} in `out`, printed too; [] (nothing
    written) when no two runs have per-item files of the same task. `rows`: paired_rows' already
    computed (compare.py computes them before it writes anything)."""
    rows = paired_rows(runs, metrics) if rows is None else rows
    if not rows:
        log.info("compare: no per-item files shared by two runs' results; no paired comparison")
        return rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(out) / "compare_paired.csv", buffer.getvalue())
    text = markdown(rows)
    write_text_atomic(Path(out) / "compare_paired.md", text)
    print(f"\nPaired differences against {rows[0]['against']} (same items):\n{text}")
    return rows
