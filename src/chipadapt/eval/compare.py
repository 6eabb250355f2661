"""`python compare.py runs=[...]`: many runs -> one table (markdown + CSV) and plots.

Runs are train, evaluate or merge run folders, multirun roots or globs (`compare_runs`); each brings
its overrides and its metrics by name (`chipadapt.run_metrics`: `val/domain/bpb` for training,
`ifeval.prompt_loose` for evaluations). The table puts what the sweep varied beside the metrics.
Plots: each metric against the numeric key every run sets (ChipAlign's lambda curve) or grouped bars
(ChipNeMo's before/after bars); with exactly two metrics named, one against the other with the
Pareto front; with paired rows, compare_paired.png (each later run's difference from the first, with
its paired interval and verdict). A training run whose validation read other held-out text than the first training run's
(another byte budget or documents, or a run from before the record with other settings) is marked
not comparable (compare_validation.py); a "running" one that no live process holds is "stopped".
Training runs pair on their final validation's per-document file (paired_compare.py); where they trained
for other numbers of steps (a sweep whose blend weights shrink the epoch below trainer.max_steps) the
table gets a `trained` column and a note.
"""

import csv
import io
import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from chipadapt.errors import ChipadaptError
from chipadapt.eval.compare_plots import metric_plot, paired_plot, pareto_plot, short_labels
from chipadapt.eval.compare_runs import STOPPED, Run, load_runs, swept_keys
from chipadapt.eval.compare_validation import validation_notes
from chipadapt.eval.paired_compare import other_tokenizer_notes, paired_rows, write_paired
from chipadapt.eval.same_items import SELECTING
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.outputs import check_output_folder, write_marker
from chipadapt.report import bracketed, why_no_interval

log = logging.getLogger(__name__)


# Keys sweeps usually vary, the most usual first: among keys that vary over as many values, the curve's
# x axis is the first of these (ChipAlign's lambda, then the learning rate), then the first by name.
USUAL_AXES = ("merge.lam", "optim.lr")


def distinct_numbers(runs: list[Run], key: str) -> int:
    """How many values `key` takes, where every run sets it to a number; 0 where one does not."""
    try:
        return len({float(r.overrides[key]) for r in runs})
    except (KeyError, ValueError):
        return 0


def item_selector(key: str) -> bool:
    """A key that picks which items are scored (eval.chip_mcq.limit, max_per_subject): base and adapted
    runs evaluated on 12 and 6 items are no curve over the item count; they are bars, paired on the items
    both scored."""
    return key.rsplit(".", 1)[-1] in SELECTING


def axis_candidates(runs: list[Run]) -> dict[str, int]:
    """{key: its number of values} for the overrides every run sets to a number that differs between runs,
    but item selectors."""
    common = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    counts = {key: distinct_numbers(runs, key) for key in sorted(common) if not item_selector(key)}
    return {key: count for key, count in counts.items() if count > 1}


def _axis_rank(key: str, count: int) -> tuple:
    return -count, USUAL_AXES.index(key) if key in USUAL_AXES else len(USUAL_AXES), key


def numeric_axis(runs: list[Run], x: str | None) -> str | None:
    """The curve's x axis: `x` where given, else the numeric override with the most values (an Optuna search
    varies every key: taking the first by name put a data weight where the learning rate belonged)."""
    if x:
        if distinct_numbers(runs, x) > 1:
            return x
        raise ChipadaptError(f"compare.x: {x!r} is not a numeric override of every run that differs between them")
    candidates = axis_candidates(runs)
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda k: _axis_rank(k, candidates[k]))
    others = f" (also numeric and swept: {', '.join(ranked[1:])})" if len(ranked) > 1 else ""
    log.info("compare: x axis %s, %d values; x=KEY picks another%s", ranked[0], candidates[ranked[0]], others)
    return ranked[0]


# A task's figures per group of its items (mcq's 57 MMLU subjects and 4 categories): named ones are
# compared; the default table keeps to the task's own figures, as lm-eval's summary does.
BREAKDOWNS = (".by_subject.", ".by_category.")


def chosen_metrics(runs: list[Run], requested: list[str] | None) -> list[str]:
    available = sorted({m for r in runs for m in r.metrics})
    if not available:
        folders = ", ".join(str(r.folder) for r in runs[:3])
        raise ChipadaptError(
            f"compare.runs: no metrics in {len(runs)} run(s) ({folders}): unfinished runs, or runs without evaluation"
        )
    metrics = requested or [m for m in available if not any(part in m for part in BREAKDOWNS)] or available
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise ChipadaptError(f"compare.metrics: {unknown[0]!r} is in no results file (e.g. {available[:5]})")
    return metrics


def _interval(run: Run, metric: str) -> tuple[object, object, object]:
    """(low, high, n) of `metric` in `run`; blanks where its results carry none (training's validation)."""
    found = run.uncertainty.get(metric) or {}
    low, high = found.get("ci") or ("", "")
    return low, high, found.get("n", "")


def _why_no_interval(run: Run, metric: str) -> str:
    """Why `metric` of `run` carries no interval where its figures say (a training run's split over too few
    groups: `(interval n/a: n=4 groups, too few)`, modules/val_figures.py); "" otherwise."""
    return why_no_interval((run.uncertainty.get(metric) or {}).get("why"))


def cell(run: Run, metric: str) -> str:
    """`0.3 [0.0667, 0.6525] n=10`: a value read beside another needs its interval and item count
    (0.3 over 10 items is no better than 0.2414 over 58)."""
    if metric not in run.metrics:
        return ""
    low, high, n = _interval(run, metric)
    text = f"{run.metrics[metric]:.4g}"
    if low != "":  # an end past the float range (a diverged model's ppl) is null in results.json
        text += " " + bracketed(low, high, n if n != "" else None, lambda end: f"{end:.4g}")
    elif n != "" and (why := _why_no_interval(run, metric)):
        text += f" {why}"
    return text + (f" n={n}" if n != "" else "")


def row_label(run: Run) -> str:
    """The run's label, and its status where it did not complete (a failed run is not a blank row), and
    why its validation figures do not compare where they read other text (compare_validation.py)."""
    label = run.label
    if run.status == STOPPED:
        label += " (stopped without finishing: status running, but no live process holds its lock)"
    elif run.status not in (None, "completed"):
        label += f" ({run.status})"
    if run.extra.get("val_note"):
        label += f" (val/ not comparable: {run.extra['val_note']})"
    return label


def _budget_text(run: Run) -> str:
    """`2 steps, 8,192 tokens` a training run trained for (compare_runs.trained_budget); blank otherwise."""
    budget = run.extra.get("trained")
    if not budget:
        return ""
    steps, tokens = budget
    return f"{steps} steps" + (f", {tokens:,} tokens" if tokens is not None else "")


def unequal_budgets(runs: list[Run]) -> bool:
    """Whether the training runs compared trained for different numbers of steps or tokens."""
    return len({tuple(r.extra["trained"]) for r in runs if r.extra.get("trained")}) > 1


def budget_note(runs: list[Run]) -> str:
    steps = sorted({r.extra["trained"][0] for r in runs if r.extra.get("trained")})
    return (
        f"The training runs trained for different budgets ({steps[0]} to {steps[-1]} steps; column `trained`): "
        "their figures compare unequal training, not only the settings they vary. trainer.max_steps binds only "
        "where the epochs hold as many steps (trainer.max_epochs, the sources' epochs and weights decide them)."
    )


def write_tables(runs: list[Run], metrics: list[str], out: Path, notes: list[str] = ()) -> list[str]:
    """compare.csv and compare.md; `notes` go under the table (per-token figures of other tokenizers).
    Training runs that trained for other numbers of steps get a `trained` column and a note."""
    swept = swept_keys(runs)
    unequal = unequal_budgets(runs)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = [(m, f"{m}_ci95_lo", f"{m}_ci95_hi", f"{m}_n") for m in metrics]
    header = ["run", "kind", "status", "folder", *swept, *(c for group in columns for c in group)]
    writer.writerow([*header, "validation_text", "trained_steps", "trained_tokens"])
    for r in runs:
        writer.writerow(
            [
                r.label,
                r.kind,
                r.status or "",
                str(r.folder),
                *(r.overrides.get(k, "") for k in swept),
                *(v for m in metrics for v in (r.metrics.get(m, ""), *_interval(r, m))),
                r.extra.get("val_note", ""),
                *(("" if v is None else v) for v in (r.extra.get("trained") or ("", ""))),
            ]
        )
    write_text_atomic(out / "compare.csv", buffer.getvalue())
    shown = [*metrics, "trained"] if unequal else metrics
    lines = ["| run | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for r in runs:
        cells = [cell(r, m) for m in metrics] + ([_budget_text(r)] if unequal else [])
        lines.append(f"| {row_label(r)} | " + " | ".join(cells) + " |")
    if any(r.uncertainty for r in runs):
        lines.append("\nEach value: [its 95% interval] n=items it is computed from (results.json's _ci and _n).")
    if any(r.extra.get("val_note") for r in runs):
        lines.append(
            "\nval/ figures compare only on the same held-out text; a run marked read other text than the first "
            "training run (data.val_max_bytes of whole documents, the same at any seq_len and tokenizer)."
        )
    if unequal:
        lines.append(f"\n{budget_note(runs)}")
    lines += [f"\n{note}" for note in notes]
    write_text_atomic(out / "compare.md", "\n".join(lines) + "\n")
    return lines


def as_list(cfg: DictConfig, key: str, unique: bool = False) -> list[str] | None:
    """A list-valued key; `runs=outputs/a` (one string) is read as `runs=[outputs/a]`, never as letters.
    Entries are names and paths: `runs=[1]` is the folder "1", not a number a path cannot be built from.
    `unique`: an entry named twice is an error (two runs with one label, a metric plotted against itself)."""
    value = cfg[key]
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, ListConfig):
        raise ChipadaptError(f"compare.{key}: {value!r} is not a list, e.g. '{key}=[a,b]'")
    entries = [str(v) for v in value]
    twice = next((v for i, v in enumerate(entries) if v in entries[:i]), None) if unique else None
    if twice is not None:
        raise ChipadaptError(f"compare.{key}: {twice!r} is named twice")
    return entries


def check_settings(cfg: DictConfig) -> None:
    """The scalar keys, before any run is read: a wrong type would otherwise surface as a traceback deep
    in the plots (max_plot_metrics=abc) or be taken silently (overwrite=no is the string "no", true)."""
    limit = cfg.max_plot_metrics
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ChipadaptError(f"compare.max_plot_metrics: {limit!r} is not a whole number of at least 1")
    if not isinstance(cfg.overwrite, bool):
        raise ChipadaptError(f"compare.overwrite: {cfg.overwrite!r} is not true or false")
    if cfg.x is not None and not isinstance(cfg.x, str):
        raise ChipadaptError(f"compare.x: {cfg.x!r} is not an override's name, e.g. x=merge.lam")
    if not isinstance(cfg.output, str) or not cfg.output:
        raise ChipadaptError(f"compare.output: {cfg.output!r} is not a folder")


def output_folder(cfg: DictConfig, runs: list[Run]) -> Path:
    """The folder the tables and plots go to. The run's own folder (the default) is ours; a folder the user
    names must be new, or an earlier compare's output with overwrite=true, and not one of the runs."""
    out = Path(cfg.output)
    if out.expanduser().resolve() == Path(cfg.paths.output_dir).expanduser().resolve():
        return out
    check_output_folder(out, "compare", "output", bool(cfg.overwrite), [("runs", r.folder) for r in runs])
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "compare")  # before the files: a later run recognises the folder as a compare output
    return out


def compare(cfg: DictConfig) -> dict:
    check_settings(cfg)
    runs = load_runs(as_list(cfg, "runs") or [], as_list(cfg, "labels", unique=True))
    metrics = chosen_metrics(runs, as_list(cfg, "metrics", unique=True))
    axis = numeric_axis(runs, cfg.x)
    for line in validation_notes(runs, metrics):  # against the first training run as named, before sorting
        log.warning(line)
    # The paired comparisons are against the first run named with per-item files; the paired table and plot name runs by
    # their short labels (the whole override strings ran past 150 characters a cell).
    given = [(label, r.folder) for label, r in zip(short_labels(runs), runs)]
    # Item by item against the first run, where both wrote per-item files (evaluate.py, merge.py with eval),
    # for the tasks of the metrics asked for. A task whose items cannot be paired (other items, other
    # limits) is a "not paired" row with its reason and one warning, and the exit status stays 0: the
    # tables and plots, which need no pairing, are right and complete, the paired file says what it left
    # out and why, and a failing status would make a sweep's script drop a comparison that is usable.
    paired = paired_rows(given, as_list(cfg, "metrics"))
    if axis:
        runs.sort(key=lambda r: float(r.overrides[axis]))
    out = output_folder(cfg, runs)
    earlier = earlier_outputs(out)
    lines = write_tables(runs, metrics, out, other_tokenizer_notes(paired))
    plots = {"metrics": str(metric_plot(runs, metrics[: cfg.max_plot_metrics], axis, out))}
    summary = {"runs": len(runs), "metrics": metrics, "axis": axis, "plot": plots["metrics"]}
    both = [r for r in runs if all(m in r.metrics for m in metrics)]
    if cfg.metrics and len(metrics) == 2 and both:
        path, front = pareto_plot(runs, metrics[0], metrics[1], out)
        plots["pareto"], summary["pareto_front"] = str(path), front
    elif cfg.metrics and len(metrics) == 2:
        log.warning("no Pareto plot: no run has both %s and %s", *metrics)
    summary["plots"] = plots
    log.info("compared %d runs on %d metrics: %s", len(runs), len(metrics), out)
    print("\n".join(lines))
    summary["paired"] = write_paired(given, as_list(cfg, "metrics"), out, paired)
    paired_png = paired_plot(summary["paired"], out)
    if paired_png:
        plots["paired"] = str(paired_png)
    for path, written in earlier.items():  # an earlier comparison's plots this one did not redraw
        if path.is_file() and file_version(path) == written:  # every output is replaced, never edited
            path.unlink()
    return summary


# Every file compare writes, by name: a user's `compare_notes.md` beside them is never one of them.
OUTPUTS = ("compare.csv", "compare.md", "compare_curve.png", "compare_bars.png", "compare_pareto.png")
PAIRED_OUTPUTS = ("compare_paired.csv", "compare_paired.md", "compare_paired.png")


def earlier_outputs(out: Path) -> dict[Path, tuple[int, int]]:
    """compare's own files already in `out` (a rerun in the same folder)."""
    return {out / name: file_version(out / name) for name in (*OUTPUTS, *PAIRED_OUTPUTS) if (out / name).is_file()}


def file_version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns
