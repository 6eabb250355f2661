"""What a hyperparameter search optimises: the metric named by the root key `optimized_metric`
(`val/domain/bpb`, `ifeval.prompt_loose`, ...), read from the finished run's manifest.json, so
every entry point's `main` returns it and a Hydra sweeper (Optuna) can use it. Its direction
(minimize/maximize) is set beside it in each `hparams_search` preset."""

import json
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.run_metrics import run_metrics


def optimized_value(cfg: DictConfig) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    manifest_file = Path(cfg.paths.output_dir) / "manifest.json"
    if not manifest_file.is_file():
        raise ChipadaptError(f"optimized_metric: {manifest_file} was not written; this entry point records no metrics")
    metrics = run_metrics(json.loads(manifest_file.read_text()))
    if name not in metrics:
        raise ChipadaptError(
            f"optimized_metric: {name!r} is not a metric of this run (it has: {', '.join(sorted(metrics)[:12])})"
        )
    return metrics[name]
