"""`python compare.py runs=[...]`: many results.json files -> one table (markdown + CSV) and plots.

A run is labelled by its Hydra overrides (`.hydra/overrides.yaml` beside results.json) or its
folder name. When every run sets the same numeric override (e.g. `merge.lam`), the plot is a curve of
each metric against it (ChipAlign's lambda curve); otherwise grouped bars per metric (ChipNeMo's
before/after bars).
"""

import csv
import glob
import io
import json
import logging
from pathlib import Path

import yaml
from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.eval.run import flat_metrics
from chipadapt.io.atomic import write_text_atomic

log = logging.getLogger(__name__)
SKIP = ("seconds", "questions", "tasks", "threads", "prompts", "scripts", "queries", "passages", "documents", "tokens", "subjects")


def find_results(patterns: list[str]) -> list[Path]:
    files = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            path = path / "results.json"
        matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
        if not matches:
            raise ChipadaptError(f"compare.runs: nothing matches {pattern!r} (a run folder, a results.json or a glob)")
        files += [m / "results.json" if m.is_dir() else m for m in matches]
    return list(dict.fromkeys(files))


def run_overrides(results_file: Path) -> dict[str, str]:
    overrides = results_file.parent / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return {}
    pairs = {}
    for item in yaml.safe_load(overrides.read_text()) or []:
        key, _, value = str(item).partition("=")
        if not key.lstrip("+~").startswith("hydra."):
            pairs[key.lstrip("+~")] = value
    return pairs


def load_runs(files: list[Path], labels: list[str] | None) -> list[dict]:
    runs = []
    for i, file in enumerate(files):
        try:
            results = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ChipadaptError(f"{file}: not valid JSON ({err.msg})") from None
        overrides = run_overrides(file)
        label = labels[i] if labels and i < len(labels) else (" ".join(f"{k}={v}" for k, v in overrides.items()) or file.parent.name)
        metrics = {}
        for task, values in results.items():
            if isinstance(values, dict):
                for name, value in flat_metrics(values):
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and name.split(".")[-1] not in SKIP:
                        metrics[f"{task}.{name}"] = float(value)
        runs.append({"label": label, "file": str(file), "overrides": overrides, "metrics": metrics})
    return runs


def numeric_axis(runs: list[dict], x: str | None) -> str | None:
    candidates = [x] if x else sorted(set.intersection(*(set(r["overrides"]) for r in runs))) if runs else []
    for key in candidates:
        try:
            values = [float(r["overrides"][key]) for r in runs]
        except (KeyError, ValueError):
            continue
        if len(set(values)) > 1:
            return key
    if x:
        raise ChipadaptError(f"compare.x: {x!r} is not a numeric override of every run")
    return None


def compare(cfg: DictConfig) -> dict:
    files = find_results(list(cfg.runs))
    runs = load_runs(files, list(cfg.labels) if cfg.labels else None)
    metrics = list(cfg.metrics) if cfg.metrics else sorted({m for r in runs for m in r["metrics"]})
    unknown = [m for m in metrics if not any(m in r["metrics"] for r in runs)]
    if unknown:
        raise ChipadaptError(f"compare.metrics: {unknown[0]!r} is in no results file (e.g. {sorted(runs[0]['metrics'])[:5]})")
    axis = numeric_axis(runs, cfg.x)
    if axis:
        runs.sort(key=lambda r: float(r["overrides"][axis]))
    out = Path(cfg.output)

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run", *metrics])
    for r in runs:
        writer.writerow([r["label"], *(r["metrics"].get(m, "") for m in metrics)])
    write_text_atomic(out / "compare.csv", buffer.getvalue())
    lines = ["| run | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for r in runs:
        lines.append(f"| {r['label']} | " + " | ".join(f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "" for m in metrics) + " |")
    write_text_atomic(out / "compare.md", "\n".join(lines) + "\n")
    plot = _plot(runs, metrics[: cfg.max_plot_metrics], axis, out)
    log.info("compared %d runs on %d metrics: %s", len(runs), len(metrics), out)
    print("\n".join(lines))
    return {"runs": len(runs), "metrics": metrics, "axis": axis, "plot": str(plot)}


def _plot(runs: list[dict], metrics: list[str], axis: str | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        values = [r["metrics"].get(metric, float("nan")) for r in runs]
        if axis:
            ax.plot([float(r["overrides"][axis]) for r in runs], values, marker="o")
            ax.set_xlabel(axis)
        else:
            ax.bar(range(len(runs)), values, color=[f"C{i}" for i in range(len(runs))])
            ax.set_xticks(range(len(runs)), [r["label"][:24] for r in runs], rotation=30, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    name = "compare_curve.png" if axis else "compare_bars.png"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out / name)
    return out / name
