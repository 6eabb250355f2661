"""After `python merge.py -m merge.lam=... eval=[...]`: one table and one plot for the whole sweep.

A Hydra callback (conf/merge.yaml, hydra.callbacks.lambda_sweep) reads every job's results.json
and merge manifest, plots the domain score against the instruction-following score with each
point labelled by its lambda (one line per merge method), and chooses the lambda that best
balances both: the highest mean of the two scores, each min-max normalised over the sweep.
"""

import csv
import io
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402

from chipadapt.io.atomic import atomic_file, write_json_atomic, write_text_atomic  # noqa: E402

log = logging.getLogger(__name__)


def metric(results: dict, dotted: str) -> float | None:
    task, _, name = dotted.partition(".")
    return results.get(task, {}).get(name)


def collect(sweep_dir: Path, domain_metric: str, instruct_metric: str) -> list[dict]:
    rows = []
    for job in sorted(p for p in sweep_dir.iterdir() if (p / "results.json").is_file()):
        results = json.loads((job / "results.json").read_text())
        manifest = (
            json.loads((job / "model" / "merge_manifest.json").read_text())
            if (job / "model" / "merge_manifest.json").is_file()
            else {}
        )
        summary = manifest.get("summary", {})
        rows.append(
            {
                "job": job.name,
                "method": summary.get("method"),
                "lam": summary.get("lam"),
                "domain": metric(results, domain_metric),
                "instruct": metric(results, instruct_metric),
            }
        )
    return [r for r in rows if r["domain"] is not None and r["instruct"] is not None]


def choose(rows: list[dict], domain_higher_is_better: bool) -> dict:
    def normalised(values, higher_better):
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        return [((v - lo) if higher_better else (hi - v)) / span for v in values]

    d = normalised([r["domain"] for r in rows], domain_higher_is_better)
    i = normalised([r["instruct"] for r in rows], True)
    for row, a, b in zip(rows, d, i):
        row["balance"] = (a + b) / 2
    return max(rows, key=lambda r: r["balance"])


def plot(
    rows: list[dict], best: dict, domain_metric: str, domain_higher_is_better: bool, instruct_metric: str, path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    for method in sorted({r["method"] for r in rows}):
        points = sorted((r for r in rows if r["method"] == method), key=lambda r: r["lam"])
        ax.plot([r["instruct"] for r in points], [r["domain"] for r in points], marker="o", label=method)
        for r in points:
            ax.annotate(
                f"{r['lam']:g}", (r["instruct"], r["domain"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    ax.scatter(
        [best["instruct"]],
        [best["domain"]],
        s=160,
        facecolors="none",
        edgecolors="red",
        label=f"chosen: {best['method']} lam={best['lam']:g}",
    )
    ax.set_xlabel(f"instruction following ({instruct_metric})")
    ax.set_ylabel(f"domain ({domain_metric}{'' if domain_higher_is_better else ', lower is better: axis inverted'})")
    if not domain_higher_is_better:
        ax.invert_yaxis()  # up and right are both better
    ax.set_title("Merge sweep: domain vs. instruction following (labels: lambda)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:  # a crash mid-write keeps the previous plot whole
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


class LambdaSweepReport(Callback):
    def __init__(self, domain_metric: str, domain_higher_is_better: bool, instruct_metric: str):
        self.domain_metric, self.domain_higher_is_better, self.instruct_metric = (
            domain_metric,
            domain_higher_is_better,
            instruct_metric,
        )

    def on_multirun_start(self, config, **kwargs) -> None:
        """Said before the sweep, not after it: a report metric whose task the sweep does not evaluate."""
        tasks = list(config.get("eval") or {})
        for key, name in (("domain_metric", self.domain_metric), ("instruct_metric", self.instruct_metric)):
            if str(name).split(".")[0] not in tasks:
                log.warning(
                    "sweep report: hydra.callbacks.lambda_sweep.%s=%s is of no task this sweep evaluates "
                    "(eval=[%s]); no report will be built (add its task to eval=[...], or name another metric)",
                    key,
                    name,
                    ",".join(tasks),
                )

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect(sweep_dir, self.domain_metric, self.instruct_metric)
        if not rows:
            log.warning(
                "sweep report: no job's results.json has both %s and %s (add eval=[...] to the sweep, or name other "
                "metrics with hydra.callbacks.lambda_sweep.domain_metric=... / instruct_metric=...)",
                self.domain_metric,
                self.instruct_metric,
            )
            return
        best = choose(rows, self.domain_higher_is_better)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["job", "method", "lam", "domain", "instruct", "balance"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["method"], r["lam"])))
        write_text_atomic(sweep_dir / "sweep_report.csv", buffer.getvalue())
        write_json_atomic(
            sweep_dir / "sweep_report.json",
            {
                "domain_metric": self.domain_metric,
                "instruct_metric": self.instruct_metric,
                "chosen": best,
                "jobs": rows,
            },
        )
        plot(
            rows,
            best,
            self.domain_metric,
            self.domain_higher_is_better,
            self.instruct_metric,
            sweep_dir / "sweep_report.png",
        )
        from chipadapt.loggers.sweep_run import log_sweep_report

        log_sweep_report(config.get("logger"), sweep_dir, sweep_dir / "sweep_report.png", rows, best)
        log.info(
            "sweep report: chosen %s lam=%s (domain %s, instruct %s) -> %s",
            best["method"],
            best["lam"],
            best["domain"],
            best["instruct"],
            sweep_dir / "sweep_report.png",
        )
