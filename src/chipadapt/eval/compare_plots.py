"""compare.py's plots: each metric against the swept numeric key (a curve), grouped bars when there
is none, and, when two metrics are named, one against the other with the Pareto front (the runs no
other run beats on both) — e.g. domain bpb against IFEval for a merge sweep."""

from pathlib import Path

from chipadapt.io.atomic import atomic_file
from chipadapt.run_metrics import lower_is_better


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def metric_plot(runs, metrics: list[str], axis: str | None, out: Path) -> Path:
    plt = _pyplot()
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        values = [r.metrics.get(metric, float("nan")) for r in runs]
        if axis:
            ax.plot([float(r.overrides[axis]) for r in runs], values, marker="o")
            ax.set_xlabel(axis)
        else:
            ax.bar(range(len(runs)), values, color=[f"C{i}" for i in range(len(runs))])
            ax.set_xticks(range(len(runs)), [r.label[:24] for r in runs], rotation=30, ha="right", fontsize=7)
        ax.set_title(metric + (" (lower is better)" if lower_is_better(metric) else ""), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    return _save(fig, plt, out / ("compare_curve.png" if axis else "compare_bars.png"))


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
    for run, (x, y) in zip(kept, points):
        ax.annotate(run.label[:30], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
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
