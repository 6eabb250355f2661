"""What a hyperparameter search optimises: the metric named by the root key `optimized_metric`
(`val/domain/bpb`, `ifeval.prompt_loose`, ...), read from the finished run's manifest.json, so
every entry point's `main` returns it and a Hydra sweeper (Optuna) can use it. Its direction
(minimize/maximize) is set beside it in each `hparams_search` preset; `better_direction` says which one
the metric needs, so that a sweep told the other (a preset's metric overridden, its direction kept) is
refused before its first trial (sweep_preflight) instead of searching for the worst value."""

import json
import math
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.io.launch_ranks import other_process_of_a_launch
from chipadapt.run_metrics import is_metric_name, lower_is_better, run_metrics


def optimized_value(cfg: DictConfig) -> float | None:
    name = cfg.get("optimized_metric")
    # Rank 0's value alone feeds a sweeper: another process a launcher started writes no manifest.json, and the one
    # it would read is rank 0's, which may have no metrics yet (rank 0 still publishing), not "no such metric".
    if not name or other_process_of_a_launch():
        return None
    manifest_file = Path(cfg.paths.output_dir) / "manifest.json"
    if not manifest_file.is_file():
        raise ChipadaptError(f"optimized_metric: {manifest_file} was not written; this entry point records no metrics")
    manifest = json.loads(manifest_file.read_text())
    metrics = run_metrics(manifest)
    if name not in metrics and name in run_metrics(_nulls_as_nan(manifest)):
        # Recorded as null: non-finite (an infinite perplexity after a huge loss; strict JSON has no inf).
        return math.nan
    if name not in metrics:
        raise ChipadaptError(
            f"optimized_metric: {name!r} is not a metric of this run (it has: {', '.join(sorted(metrics)[:12])})"
        )
    return metrics[name]


def better_direction(name: str) -> str | None:
    """`minimize` or `maximize`: how a search must optimise the metric `name`, by the rule compare.py
    labels its tables and plots with (run_metrics: bits per byte, perplexity, losses and the other
    LOWER_IS_BETTER names are lower-is-better, every other metric higher-is-better). None where `name`
    is no metric (a count such as `perplexity.domain.tokens`, a setting, an interval): its sense is
    unknown, and the run itself says whether it records such a metric."""
    if lower_is_better(name):
        return "minimize"
    last = name.replace("/", ".").split(".")[-1].removeprefix("train_")
    return "maximize" if last and is_metric_name(last) else None


def _nulls_as_nan(tree):
    if isinstance(tree, dict):
        return {key: _nulls_as_nan(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_nulls_as_nan(value) for value in tree]
    return math.nan if tree is None else tree
