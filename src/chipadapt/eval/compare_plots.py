"""compare.py's plots: each metric against the swept numeric key (a curve), grouped bars when there
is none, and, when two metrics are named, one against the other with the Pareto front (the runs no
other run beats on both) — e.g. domain bpb against IFEval for a merge sweep. With paired rows
(paired_compare.py), each later run's difference from the first with its paired interval: two runs'
own intervals can overlap heavily where the paired test resolves the difference (bits per byte 1.797
[1.648, 1.959] against 1.751 [1.610, 1.904], paired -0.046 [-0.059, -0.035])."""

import math
import os
import re
import textwrap
from pathlib import Path

from chipadapt.eval.compare_runs import label_values, swept_keys
from chipadapt.eval.compare_validation import VALIDATION_PREFIX
from chipadapt.io.atomic import atomic_file
from chipadapt.run_metrics import lower_is_better


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    with atomic_file(path) as tmp:  # "tight": labels that reach past the axes are kept, not cut off
        fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def _distinct_paths(values: list[str]) -> list[str]:
    """Paths that differ only somewhere inside, without the folders they share at both ends:
    /x/sweep/runA/model and /x/sweep/runB/model -> .../runA/..., .../runB/..."""
    if len(values) < 2 or not all("/" in v for v in values):
        return values
    head = os.path.commonprefix(values)
    head = head[: head.rfind("/") + 1]
    if head.strip("/") == "":  # no folder in common (a cached model against a run's): each by its ending
        return _distinct_endings(values)
    tails = [v[len(head) :] for v in values]
    tail = os.path.commonprefix([t[::-1] for t in tails])[::-1]
    tail = tail[tail.find("/") :] if "/" in tail else ""
    inner = [t[: len(t) - len(tail)] for t in tails]
    if len(set(inner)) < len(set(values)) or not all(inner):
        return values
    return [f"{'.../' if head else ''}{i}{'/...' if tail else ''}" for i in inner]


def _distinct_endings(values: list[str]) -> list[str]:
    """Each path by its shortest ending of at least two parts that no other path ends with:
    /root/.cache/models/tiny-llama-d4ee and /tmp/sw_tb/0/model -> .../models/tiny-llama-d4ee, .../0/model."""
    parts = [v.rstrip("/").split("/") for v in values]
    shown = []
    for i, mine in enumerate(parts):
        for n in range(2, len(mine) + 1):
            ending = mine[-n:]
            if not any(j != i and other[-n:] == ending for j, other in enumerate(parts)):
                break
        shown.append(values[i] if n >= len(mine) - 1 else ".../" + "/".join(ending))
    return shown if len(set(shown)) == len(shown) else values


def _paths(values: list[str]) -> list[str]:
    """Path values as short as still tells them apart: the runs that set a path by the part that differs
    (_distinct_paths); a path only one run sets (the others use the default) by its last two parts."""
    set_ = [i for i, v in enumerate(values) if "/" in v]
    if not set_:
        return values
    shown = list(values)
    inner = _distinct_paths([values[i] for i in set_]) if len(set_) > 1 else [_tail(values[set_[0]])]
    for i, text in zip(set_, inner):
        shown[i] = text
    return shown


def _tail(path: str) -> str:
    parts = path.rstrip("/").split("/")
    return path if len(parts) <= 3 else ".../" + "/".join(parts[-2:])


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest ending of at least two parts that no other key ends with
    (eval.mcq.limit -> mcq.limit beside eval.ifeval.limit; model.path stays)."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for start in range(max(len(parts) - 2, 0), -1, -1):
            ending = ".".join(parts[start:])
            if not any(other != key and (other == ending or other.endswith("." + ending)) for other in keys):
                short[key] = ending
                break
        else:
            short[key] = key
    return short


def short_labels(runs) -> list[str]:
    """Each run's label as plots and the paired table show it: the user's `labels=` as given; else the
    overrides that differ between the runs, each key by its shortest distinct ending and each path by the
    part that tells the runs apart (a whole override string runs past 150 characters). The whole labels,
    where two short ones would read the same."""
    keys = list(dict.fromkeys(k for run in runs for k in run.label_keys))
    names = _short_keys(keys)
    shown = {k: _paths([str(label_values(run).get(k, "")) for run in runs]) for k in keys}
    labels = [
        " ".join(f"{names[k]}={shown[k][i]}" for k in run.label_keys) if run.label_keys else run.label
        for i, run in enumerate(runs)
    ]
    return labels if len(set(labels)) == len(labels) else [run.label for run in runs]


def plot_labels(runs, width: int) -> list[str]:
    """short_labels wrapped at `width` characters (cut off, two runs could show the same label)."""
    return [_wrap(label, width) for label in short_labels(runs)]


def _wrap(label: str, width: int) -> str:
    """One `key=value` per line; a longer one broken after its `=`, then after separators (/ , _ - . =),
    so a line ends where a path part or word does ('.../dapt/' 'model', never 'dapt/mode' 'l'); a piece
    longer than `width` without one is cut every `width` characters."""
    lines = []
    for part in label.split():
        key, sep, value = part.partition("=")
        if len(part) > width and sep:
            lines += [key + sep, *_wrap_at_separators(value, width)]
        else:
            lines += _wrap_at_separators(part, width)
    return "\n".join(lines)


def _wrap_at_separators(text: str, width: int) -> list[str]:
    lines = [""]
    for piece in re.findall(r"[^/,_.=\-]*[/,_.=\-]?", text):
        while len(piece) > width:  # no separator to break at
            if lines[-1]:
                lines.append("")
            lines[-1], piece = piece[:width], piece[width:]
            lines.append("")
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return [line for line in lines if line]


def error_bars(runs, metric: str) -> list[list[float]]:
    """[below, above] each run's value: the distances to its 95% interval's ends (nan where it has none),
    as matplotlib's `yerr` takes them; a value drawn without them reads as exact."""
    below, above = [], []
    for run in runs:
        value = run.metrics.get(metric, float("nan"))
        low, high = (run.uncertainty.get(metric) or {}).get("ci") or (None, None)
        # A null end (a manifest's unbounded one: [6.7e293, null] of a diverged perplexity) has no bar on
        # its side, as a run with no interval has none: `value - None` ended compare.py in a traceback.
        below.append(_distance(value, low))
        above.append(_distance(high, value))
    return [below, above]


def _distance(upper, lower) -> float:
    """upper - lower, at least 0; nan (no bar) where either is missing or not finite."""
    if upper is None or lower is None:
        return float("nan")
    gap = float(upper) - float(lower)
    return max(gap, 0.0) if math.isfinite(gap) else float("nan")


def _points(ax, x: list[float], runs, metric: str, **style) -> None:
    """The runs' values of `metric` at x, with their intervals where any run has one."""
    y = [r.metrics.get(metric, float("nan")) for r in runs]
    yerr = error_bars(runs, metric)
    if all(math.isnan(v) for v in yerr[0]):
        ax.plot(x, y, **style)
    else:
        ax.errorbar(x, y, yerr=yerr, capsize=3, **style)


def metric_plot(runs, metrics: list[str], axis: str | None, out: Path) -> Path:
    plt = _pyplot()
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        # A run whose val/ figures read other text (compare_validation.py, marked in compare.md) is left out
        # of their panel: drawn on the same line it would read as the same measure.
        runs_all, runs = runs, comparable(runs, metric)
        series = _series(runs, axis) if axis and len(runs) > 1 else {}
        values = [r.metrics.get(metric, float("nan")) for r in runs]
        if axis and not series:
            # Every run its own setting of the other keys (a search): points only, since a line between
            # two of them would also cross whatever else differs.
            _points(ax, [float(r.overrides[axis]) for r in runs], runs, metric, marker="o", linestyle="none")
            ax.set_xlabel(f"{axis} (runs differ in other keys too)")
        elif axis:
            # One line per setting of the other swept keys: a line through two settings is no trend.
            for name, members in series.items():
                _points(
                    ax, [float(r.overrides[axis]) for r in members], members, metric, marker="o", label=name or None
                )
            ax.set_xlabel(axis)
            if len(series) > 1:
                ax.legend(fontsize=6)
        else:
            ax.bar(
                range(len(runs)),
                values,
                yerr=error_bars(runs, metric),
                capsize=3,
                color=[f"C{i}" for i in range(len(runs))],
            )
            ax.set_xticks(range(len(runs)), plot_labels(runs, 24), fontsize=6)
        if axis and log_scale([float(r.overrides[axis]) for r in runs]):
            ax.set_xscale("log")
        bars = " (bars: 95% CI)" if any(metric in r.uncertainty for r in runs) else ""
        left = len(runs_all) - len(runs)
        out_of = f"\n{left} run(s) left out: val/ of other text" if left else ""
        ax.set_title(metric + (" (lower is better)" if lower_is_better(metric) else "") + bars + out_of, fontsize=9)
        ax.grid(alpha=0.3)
        runs = runs_all
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    return _save(fig, plt, out / ("compare_curve.png" if axis else "compare_bars.png"))


def comparable(runs, metric: str) -> list:
    """The runs whose `metric` compares with the first training run's: all but, for a val/ metric, those
    compare_validation.py marked as validated on other text."""
    if not metric.startswith(VALIDATION_PREFIX):
        return runs
    return [r for r in runs if not r.extra.get("val_note")]


def log_scale(values: list[float]) -> bool:
    """A logarithmic axis for positive values spread over a factor of 10 or more (learning rates
    1e-6 to 1e-3 sit at one point of a linear axis); a lambda in [0, 1] keeps its linear one."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) >= 10 * (1 - 1e-9)


def _series(runs, axis: str) -> dict[str, list]:
    """Runs grouped by the values of the swept keys other than `axis`, each group in `axis` order; {} when
    every run is alone in its group (an Optuna search): no two runs may then be joined by a line."""
    others = [k for k in swept_keys(runs) if k != axis]
    ordered = sorted(runs, key=lambda r: float(r.overrides[axis]))
    groups: dict[str, list] = {}
    for run in ordered:
        name = " ".join(f"{k}={run.overrides.get(k, '-')}" for k in others)
        groups.setdefault(name, []).append(run)
    if len(groups) > 1 and all(len(members) == 1 for members in groups.values()):
        return {}
    return groups


def pareto_front(points: list[tuple[float, float]], lower_x: bool, lower_y: bool) -> list[int]:
    """Indices of the points no other point is at least as good as on both axes and better on one."""

    def better_or_equal(a, b, lower):
        return a <= b if lower else a >= b

    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            better_or_equal(x2, x, lower_x) and better_or_equal(y2, y, lower_y) and (x2, y2) != (x, y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def pareto_plot(runs, x_metric: str, y_metric: str, out: Path) -> tuple[Path, list[str]]:
    plt = _pyplot()
    kept = [r for r in runs if x_metric in r.metrics and y_metric in r.metrics]
    points = [(r.metrics[x_metric], r.metrics[y_metric]) for r in kept]
    lower_x, lower_y = lower_is_better(x_metric), lower_is_better(y_metric)
    front = pareto_front(points, lower_x, lower_y)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="C0")
    for label, (x, y) in zip(plot_labels(kept, 30), points):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ordered = sorted((points[i] for i in front), key=lambda p: p[0])
    ax.plot([p[0] for p in ordered], [p[1] for p in ordered], color="C3", marker="o", label="Pareto front")
    ax.set_xlabel(f"{x_metric} ({'lower' if lower_x else 'higher'} is better)")
    ax.set_ylabel(f"{y_metric} ({'lower' if lower_y else 'higher'} is better)")
    if lower_x:
        ax.invert_xaxis()  # better is always to the right and up
    if lower_y:
        ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("runs on two metrics (up and right are better)", fontsize=9)
    return _save(fig, plt, out / "compare_pareto.png"), [kept[i].label for i in front]


def _finite_span(rows: list[dict]) -> float:
    """A width for the panel: the largest finite |end| or |difference|, so an unbounded end can be drawn
    to the panel's edge."""
    ends = [abs(float(v)) for r in rows for v in (r["difference"], r["ci95_lo"], r["ci95_hi"])]
    finite = [v for v in ends if math.isfinite(v)]
    return max(finite, default=0.0) or 1.0


TITLE_WIDTH = 70  # characters of an 8-point title on a 6-inch panel


def paired_plot(rows: list[dict], out: Path) -> Path | None:
    """compare_paired.png: one panel per metric, each later run's difference from the first run with its
    paired 95% interval, a line at 0 and the verdict beside it (None where no row was compared). An
    unbounded end (the exact test over 5 items or fewer) is drawn to the panel's edge, marked."""
    compared = [r for r in rows if r["verdict"] != "not paired"]
    if not compared:
        return None
    plt = _pyplot()
    metrics = list(dict.fromkeys(r["metric"] for r in compared))
    cols = min(2, len(metrics))
    nrows = (len(metrics) + cols - 1) // cols
    runs = list(dict.fromkeys(r["run"] for r in compared))
    height = max(1.6, 0.5 * len(runs) + 1.4)  # room for a title of two or three lines
    fig, axes = plt.subplots(nrows, cols, figsize=(6.0 * cols, height * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        mine = [r for r in compared if r["metric"] == metric]
        edge = 1.5 * _finite_span(mine)
        for y, r in enumerate(mine):
            diff, low, high = (float(r[k]) for k in ("difference", "ci95_lo", "ci95_hi"))
            drawn = (max(low, -edge), min(high, edge))
            # green where the run is better by the paired test, red where worse, grey within noise
            better = (r["verdict"] == "lower") == lower_is_better(metric)
            color = "0.5" if r["verdict"] == "within noise" else ("C2" if better else "C3")
            ax.errorbar([diff], [y], xerr=[[diff - drawn[0]], [drawn[1] - diff]], fmt="o", color=color, capsize=3)
            unbounded = " (interval unbounded)" if not (math.isfinite(low) and math.isfinite(high)) else ""
            ax.annotate(
                f"{r['verdict']}, p {float(r['p']):.3g}{unbounded}",
                (diff, y),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=7,
                color=color,
            )
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_xlim(-edge, edge)
        ax.set_ylim(-0.7, len(mine) - 0.3)
        ax.set_yticks(range(len(mine)), [_wrap(r["run"], 28) for r in mine], fontsize=6)
        better = " (lower is better)" if lower_is_better(metric) else ""
        # Wrapped to the panel's width: side by side in the 2-column grid, whole titles ran into each other.
        title = f"{metric}{better}: minus {mine[0]['against']} (paired 95% CI)"
        ax.set_title(textwrap.fill(title, TITLE_WIDTH, break_on_hyphens=False), fontsize=8)
        ax.grid(alpha=0.3, axis="x")
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    return _save(fig, plt, out / "compare_paired.png")
