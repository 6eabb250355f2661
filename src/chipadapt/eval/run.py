"""evaluate.py: run the selected tasks (`eval=[...]`) on one model folder; results.json + CSV + table."""

import csv
import io
import logging
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.table import Table

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic, write_text_atomic
from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
from chipadapt.report import console

log = logging.getLogger(__name__)


def evaluate_folder(folder, tasks: DictConfig, device: str) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} for every task config in `tasks` (name -> _target_ config).

    `folder` may be a callable that returns it: the model is only resolved (and built) when a task needs one."""
    if not tasks:
        raise ChipadaptError("eval: no task selected (e.g. eval=[perplexity,mcq,ifeval])")
    built = {name: instantiate(task_cfg) for name, task_cfg in tasks.items()}  # config errors before loading
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = tokenizer = None
    if any(getattr(task, "needs_model", True) for task in built.values()):
        folder = folder() if callable(folder) else folder
        model = load_causal_lm(folder, "bfloat16" if device == "cuda" else "float32", "sdpa").to(device).eval()
        tokenizer = load_tokenizer(folder)
    results = {}
    for name, task in built.items():
        start = time.perf_counter()
        results[name] = task.run(model, tokenizer)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        log.info("%s: %s", name, results[name])
    return results


def flat_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested metrics (retrieval: retriever -> metric) as dotted names."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += flat_metrics(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def write_results(results: dict, out: Path, title: str) -> None:
    write_json_atomic(out / "results.json", results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["task", "metric", "value"])
    for task, metrics in results.items():
        for metric, value in flat_metrics(metrics):
            writer.writerow([task, metric, value])
    write_text_atomic(out / "results.csv", buffer.getvalue())
    table = Table(title=title)
    for column in ("task", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for task, metrics in results.items():
        for metric, value in flat_metrics(metrics):
            table.add_row(task, metric, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def log_to_loggers(results: dict, logger_cfg) -> None:
    """Every numeric metric as `<task>/<metric>` to the configured Lightning loggers (csv, tensorboard, wandb)."""
    if not logger_cfg:
        return
    flat = {f"{task}/{name}": float(value) for task, metrics in results.items() for name, value in flat_metrics(metrics)
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
    for node in logger_cfg.values():
        if node is None:
            continue
        logger = instantiate(node)
        logger.log_metrics(flat, step=0)
        logger.finalize("success")


def run(cfg: DictConfig) -> dict:
    from chipadapt.quiet import silence_known_noise

    silence_known_noise()
    from chipadapt.models.hf_folder import resolve_model_folder

    results = evaluate_folder(lambda: resolve_model_folder(cfg.model), cfg.eval, cfg.device)
    write_results(results, Path(cfg.paths.output_dir), f"Evaluation ({', '.join(cfg.eval)})")
    log_to_loggers(results, cfg.get("logger"))
    return results
