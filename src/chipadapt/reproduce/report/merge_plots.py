"""The merge study's figures: the balance plot (domain bpb against IFEval, each model with its 95%
intervals) and every suite metric over lambda."""

import math

import matplotlib.pyplot as plt

from chipadapt.reproduce.report.merge_runs import DOMAIN, INSTRUCT, SUITE, Run

BASELINE_STYLE = {
    "linear": ("D", "tab:orange"),
    "slerp": ("^", "tab:purple"),
    "ties": ("v", "tab:brown"),
    "della": ("P", "tab:olive"),
}
ENDPOINT_STYLE = {"instruct": ("*", "tab:blue", 14), "chip": ("s", "tab:red", 9)}


def errors(run: Run, key: str) -> tuple[float, list[list[float]]] | None:
    """The value and matplotlib's asymmetric error bar from the run's 95% interval (zero when it has none, nan
    on a side whose end is unbounded)."""
    value = run.value(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    lo, hi = run.ci(key) or (value, value)
    # A null (unbounded) end draws no bar on its side (nan): `value - None` stopped the report.
    return value, [[_distance(value, lo)], [_distance(hi, value)]]


def _distance(upper, lower) -> float:
    """upper - lower, at least 0; nan (no bar) where an end is null or not finite."""
    if upper is None or lower is None:
        return math.nan
    gap = float(upper) - float(lower)
    return max(gap, 0.0) if math.isfinite(gap) else math.nan


def point(ax, run: Run, **style) -> tuple[float, float] | None:
    x, y = errors(run, INSTRUCT), errors(run, DOMAIN)
    if x is None or y is None:
        return None
    ax.errorbar(x[0], y[0], xerr=x[1], yerr=y[1], capsize=3, elinewidth=0.8, **style)
    return x[0], y[0]


def balance_plot(curve: list[Run], baselines: dict[str, Run], best: Run | None, fallback: bool = False):
    """ChipAlign's lambda curve (ends included) and each baseline at its chosen setting; up and to the
    right is better (lower domain bpb, more instructions followed). Domain bpb: every held-out domain
    document pooled, or, with `fallback` (runs from before domain_all.bpb), the mean of the sources' bpb."""
    fig, ax = plt.subplots(figsize=(7, 5.2))
    xy = []
    for run in curve:
        marker, color, size = ENDPOINT_STYLE.get(run.method, ("o", "black", 4))
        label = run.name if run.method in ENDPOINT_STYLE else None
        xy.append((run, point(ax, run, fmt=marker, color=color, markersize=size, label=label)))
    path = [p for _, p in xy if p]  # the curve is sorted by lambda
    if len(path) > 1:
        ax.plot(*zip(*path), "-", color="black", linewidth=1, label="ChipAlign over lambda")
    for run, p in xy:
        if p:
            ax.annotate(f"{run.lam:g}", p, textcoords="offset points", xytext=(4, 4), fontsize=7)
    if best is not None and (p := next((p for r, p in xy if r is best and p), None)):
        ax.plot(
            *p, "o", markersize=12, markerfacecolor="none", color="tab:green", label=f"ChipAlign chosen ({best.lam:g})"
        )
    for method, run in baselines.items():
        marker, color = BASELINE_STYLE.get(method, ("X", "tab:gray"))
        point(ax, run, fmt=marker, color=color, markersize=7, label=f"{method} at its best")
    ax.invert_yaxis()  # lower bpb is better: better is up
    ax.set_xlabel("IFEval instruction-level accuracy (loose), 95% interval")
    measure = "mean of sources" if fallback else "all documents pooled"
    ax.set_ylabel(f"held-out domain bits per byte, {measure}\n(lower is better, axis inverted)")
    ax.set_title("Domain vs. instruction following (labels: lambda; 0 instruct, 1 chip)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig


def lambda_plot(curve: list[Run], baselines: dict[str, Run]):
    """Each suite metric over lambda for ChipAlign (ends included), 95% intervals as error bars; the
    baselines at their chosen settings as horizontal lines (TIES and DELLA have no lambda here)."""
    cols = 4
    rows = math.ceil(len(SUITE) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, label, higher) in zip(axes.flat, SUITE):
        pts = [(r.lam, e) for r in curve if r.lam is not None and (e := errors(r, key))]
        if pts:
            ax.errorbar(
                [lam for lam, _ in pts],
                [e[0] for _, e in pts],
                yerr=[[e[1][0][0] for _, e in pts], [e[1][1][0] for _, e in pts]],
                # Joined only where every model of the curve has it: three measured points (the ends and the
                # chosen lambda) are not a curve.
                fmt="o-" if len(pts) == len(curve) else "o",
                color="black",
                capsize=3,
                label="chipalign",
            )
        for method, run in baselines.items():
            value = run.value(key)
            if value is not None:
                color = BASELINE_STYLE.get(method, ("X", "tab:gray"))[1]
                ax.axhline(value, linestyle="--", color=color, linewidth=1, label=f"{method} (best)")
        ax.axvline(0.6, color="tab:green", alpha=0.25, linewidth=6)
        ax.set_xlabel("lambda (0 instruct, 1 chip)", fontsize=8)
        ax.set_title(f"{label}{'' if higher else ' (lower better)'}", fontsize=9)
    for ax in list(axes.flat)[len(SUITE) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("ChipAlign over lambda (95% intervals); green band: the paper's best lambda (0.6)", fontsize=10)
    fig.tight_layout()
    return fig
