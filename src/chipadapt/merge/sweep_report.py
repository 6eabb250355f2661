"""After `python merge.py -m merge.lam=... eval=[...]`: one table and one plot for the whole sweep.

A Hydra callback (conf/merge.yaml, hydra.callbacks.lambda_sweep) reads every job's results.json
and merge manifest, plots the domain score against the instruction-following score with each
point labelled by its lambda (one line per merge method), and chooses the lambda that best
balances both: the highest mean of the two scores, each min-max normalised over the sweep.
Each score carries the 95% interval and item count its evaluation computed (results.json's `_ci` and
`_n`: eval/intervals.py), in the table and as error bars. The choice is then tested against the
runner-up on the same items (sweep_pairing.py): where no difference leaves noise, the report says the
two are not distinguishable instead of presenting a pick among equals as a choice.
"""

import csv
import io
import json
import logging
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from chipadapt.io.atomic import atomic_file, write_json_atomic, write_text_atomic
from chipadapt.merge.sweep_pairing import Versus, versus
from chipadapt.optimized_metric import better_direction

log = logging.getLogger(__name__)
MEASURES = ("domain", "instruct")
COLUMNS = [
    "job",
    "method",
    "lam",
    *(f"{m}{part}" for m in MEASURES for part in ("", "_ci95_lo", "_ci95_hi", "_n")),
    "balance",
]


def metric(results: dict, dotted: str) -> float | None:
    task, _, name = dotted.partition(".")
    return results.get(task, {}).get(name)


def uncertainty(results: dict, dotted: str) -> tuple[float | None, float | None, int | None]:
    """The 95% interval (low, high) and item count the evaluation wrote beside the metric; None where it wrote none."""
    task, _, name = dotted.partition(".")
    found = results.get(task, {})
    ci = found.get(f"{name}_ci")
    low, high = ci if isinstance(ci, list) and len(ci) == 2 else (None, None)
    return low, high, found.get(f"{name}_n")


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
        row = {"job": job.name, "method": summary.get("method"), "lam": summary.get("lam")}
        for measure, name in zip(MEASURES, (domain_metric, instruct_metric)):
            low, high, n = uncertainty(results, name)
            row.update(
                {
                    measure: metric(results, name),
                    f"{measure}_ci95_lo": low,
                    f"{measure}_ci95_hi": high,
                    f"{measure}_n": n,
                }
            )
        rows.append(row)
    return [r for r in rows if r["domain"] is not None and r["instruct"] is not None]


def choose(rows: list[dict], domain_higher_is_better: bool, instruct_higher_is_better: bool = True) -> dict:
    def normalised(values, higher_better):
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        return [((v - lo) if higher_better else (hi - v)) / span for v in values]

    d = normalised([r["domain"] for r in rows], domain_higher_is_better)
    i = normalised([r["instruct"] for r in rows], instruct_higher_is_better)
    for row, a, b in zip(rows, d, i):
        row["balance"] = (a + b) / 2
    return max(rows, key=lambda r: r["balance"])


def runner_up(rows: list[dict], best: dict) -> dict | None:
    """The job with the highest balance after the chosen one's (None in a sweep of one job)."""
    others = [r for r in rows if r is not best]
    return max(others, key=lambda r: r["balance"]) if others else None


def figure(row: dict, measure: str) -> str:
    """`4.79 [4.61, 4.95] n=2`: a measure of one job with its 95% interval and item count."""
    low, high, n = row[f"{measure}_ci95_lo"], row[f"{measure}_ci95_hi"], row[f"{measure}_n"]
    ci = f" [{low:.4g}, {high:.4g}]" if low is not None and high is not None else " (no interval)"
    return f"{row[measure]:.4g}{ci}" + (f" n={n}" if n is not None else "")


def statement(best: dict, second: dict | None, compared: list[Versus], rows: list[dict], metrics: list[str]) -> str:
    """What the choice rests on, in one sentence: how it differs from the runner-up on the same items."""
    figures = ", ".join(f"{name} {figure(best, measure)}" for measure, name in zip(MEASURES, metrics))
    chosen = f"chosen {best['method']} lam={best['lam']:g} ({figures})"
    if second is None:
        return f"{chosen}: the only job, nothing to choose between"
    flat = [
        f"{name} is {rows[0][measure]:g} at every lambda, so the choice rests on the other measure alone"
        for measure, name in zip(MEASURES, metrics)
        if len({r[measure] for r in rows}) == 1
    ]
    details = "; ".join(v.text() for v in compared)
    against = f"the runner-up {second['method']} lam={second['lam']:g}"
    if any(v.outcome in ("better", "worse") for v in compared):
        said = f"{chosen} differs from {against} on the same items: {details}"
    else:
        said = (
            f"{chosen} is not distinguishable from {against} on the same items: {details}; evaluate more items "
            "(eval.<task>.limit, eval.perplexity.max_documents) before taking this lambda over that one"
        )
    return "; ".join([said, *flat])


def _error(values: list[dict], measure: str) -> list[list[float]]:
    """matplotlib's asymmetric error bars (below, above) from the 95% interval; nan where none was written."""
    nan = float("nan")
    below = [r[measure] - r[f"{measure}_ci95_lo"] if r[f"{measure}_ci95_lo"] is not None else nan for r in values]
    above = [r[f"{measure}_ci95_hi"] - r[measure] if r[f"{measure}_ci95_hi"] is not None else nan for r in values]
    return [below, above]


def _counts(rows: list[dict], measure: str) -> str:
    counts = sorted({r[f"{measure}_n"] for r in rows if r[f"{measure}_n"] is not None})
    with_interval = [r[f"{measure}_ci95_lo"] is not None for r in rows]
    bars = (
        "95% interval" if all(with_interval) else "95% interval where n allows" if any(with_interval) else "no interval"
    )
    if not counts:
        return bars
    return f"{bars}, n={counts[0]}" if len(counts) == 1 else f"{bars}, n={counts[0]}..{counts[-1]}"


def plot(
    rows: list[dict],
    best: dict,
    domain_metric: str,
    domain_higher_is_better: bool,
    instruct_metric: str,
    path: Path,
    distinguishable: bool | None = None,
    second: dict | None = None,
) -> None:
    # Imported here, not with the module: Hydra builds this callback for every merge.py command, and
    # matplotlib took 1.5 CPU-s of a refusal of a mistyped argument.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for method in sorted({r["method"] for r in rows}):
        points = sorted((r for r in rows if r["method"] == method), key=lambda r: r["lam"])
        ax.errorbar(
            [r["instruct"] for r in points],
            [r["domain"] for r in points],
            xerr=_error(points, "instruct"),
            yerr=_error(points, "domain"),
            marker="o",
            capsize=3,
            label=method,
        )
        for r in points:
            ax.annotate(
                f"{r['lam']:g}", (r["instruct"], r["domain"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    label = f"chosen: {best['method']} lam={best['lam']:g}"
    if distinguishable is False and second is not None:
        label += f"\n(not distinguishable from lam={second['lam']:g}\non the same items)"
    ax.scatter([best["instruct"]], [best["domain"]], s=160, facecolors="none", edgecolors="red", label=label)
    ax.set_xlabel(f"instruction following ({instruct_metric}; {_counts(rows, 'instruct')})")
    inverted = "" if domain_higher_is_better else ";\nlower is better: axis inverted"
    ax.set_ylabel(f"domain ({domain_metric}; {_counts(rows, 'domain')}{inverted})")
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
        # Instruction following is a pass rate unless the metric named says otherwise (the project's one rule).
        self.instruct_higher_is_better = better_direction(str(instruct_metric)) != "minimize"

    def on_multirun_start(self, config, **kwargs) -> None:
        """Said before the sweep, not after it: a report metric whose task the sweep does not evaluate, and
        a domain metric whose sense the setting beside it contradicts (the report would choose its worst)."""
        sense = better_direction(str(self.domain_metric))
        if sense is not None and (sense == "maximize") != bool(self.domain_higher_is_better):
            print(
                f"chipadapt: error: hydra.callbacks.lambda_sweep.domain_higher_is_better="
                f"{str(bool(self.domain_higher_is_better)).lower()} but domain_metric={self.domain_metric} is "
                f"{'higher' if sense == 'maximize' else 'lower'}-is-better; set "
                f"hydra.callbacks.lambda_sweep.domain_higher_is_better={str(sense == 'maximize').lower()}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(2)
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
        # The sweep folder from where the sweep was launched (a job may have moved the current folder).
        sweep_dir = Path(os.path.join(config.hydra.runtime.get("cwd") or os.getcwd(), config.hydra.sweep.dir))
        rows = collect(sweep_dir, self.domain_metric, self.instruct_metric)
        if not rows:
            log.warning(
                "sweep report: no job's results.json has both %s and %s (add eval=[...] to the sweep, or name other "
                "metrics with hydra.callbacks.lambda_sweep.domain_metric=... / instruct_metric=...)",
                self.domain_metric,
                self.instruct_metric,
            )
            return
        best = choose(rows, self.domain_higher_is_better, self.instruct_higher_is_better)
        second = runner_up(rows, best)
        measures = [
            (self.domain_metric, self.domain_higher_is_better),
            (self.instruct_metric, self.instruct_higher_is_better),
        ]
        compared = [versus(sweep_dir / best["job"], sweep_dir / second["job"], *m) for m in measures] if second else []
        distinguishable = any(v.outcome in ("better", "worse") for v in compared) if second else None
        said = statement(best, second, compared, rows, [self.domain_metric, self.instruct_metric])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["method"], r["lam"])))
        write_text_atomic(sweep_dir / "sweep_report.csv", buffer.getvalue())
        write_json_atomic(
            sweep_dir / "sweep_report.json",
            {
                "domain_metric": self.domain_metric,
                "instruct_metric": self.instruct_metric,
                "chosen": best,
                "runner_up": second,
                "distinguishable_from_runner_up": distinguishable,
                "versus_runner_up": [v.as_dict() for v in compared],
                "statement": said,
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
            distinguishable,
            second,
        )
        from chipadapt.loggers.sweep_run import log_sweep_report

        chosen = {**best, "distinguishable_from_runner_up": distinguishable}
        log_sweep_report(config.get("logger"), sweep_dir, sweep_dir / "sweep_report.png", rows, chosen)
        log.info("sweep report: %s -> %s", said, sweep_dir / "sweep_report.png")
