"""The configured loggers (`logger=csv|tensorboard|wandb`) for an entry point that has no Trainer
(evaluate, merge): the run's config, its results, the model it read or wrote, its per-item
predictions and plots, each sent to the loggers able to take it."""

import json
from pathlib import Path
from typing import Any

from chipadapt.loggers.build import build_loggers
from chipadapt.loggers.job_end import finish_job_loggers

# Per-item files an evaluation writes beside results.json (`<task>_predictions.jsonl`, `verilog_results.jsonl`).
ITEM_FILE_PATTERNS = ("*_predictions.jsonl", "*_results.jsonl", "*_items.jsonl")


def numeric_items(metrics: dict, prefix: str = "", sep: str = "/") -> dict[str, float]:
    """Nested {task: {metric: value}} -> {"task/metric": float}, numbers only."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(numeric_items(value, f"{prefix}{key}{sep}", sep))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def read_item_rows(path: Path) -> tuple[list[str], list[list[Any]]]:
    """A JSONL file as table columns and rows; nested values become JSON text (tables hold scalars)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    columns = list(dict.fromkeys(key for record in records for key in record))
    rows = [
        [
            value
            if isinstance(value := record.get(column), (str, int, float, bool)) or value is None
            else json.dumps(value, ensure_ascii=False)
            for column in columns
        ]
        for record in records
    ]
    return columns, rows


class JobLoggers:
    """Instantiates every logger of `logger_cfg` (null entries switched off) and sends it the resolved config.
    A job logs its results at step 0, and a rerun in the same folder logs them all again: what an
    earlier attempt logged there is replaced (metrics.csv, TensorBoard), its W&B run continued."""

    def __init__(self, logger_cfg, config: dict):
        self.loggers = build_loggers(logger_cfg, start_step=0)
        for logger in self.loggers:
            logger.log_hyperparams(config)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def log_model(self, key: str, record: dict) -> None:
        """The model a run evaluated or wrote: path and content fingerprint (manifest `inputs` record)."""
        for logger in self.loggers:
            logger.log_hyperparams({key: {"path": record["path"], "fingerprint": record["fingerprint"]}})

    def log_item_tables(self, folder: Path) -> list[str]:
        """Each per-item file in `folder` as a table (loggers with tables: W&B); returns the keys logged."""
        keys = []
        files = sorted({f for pattern in ITEM_FILE_PATTERNS for f in Path(folder).glob(pattern)})
        for file in files:
            columns, rows = read_item_rows(file)
            if not rows:
                continue
            key = f"items/{file.stem}"
            for logger in self.loggers:
                if hasattr(logger, "log_table"):
                    logger.log_table(key=key, columns=columns, data=rows)
            keys.append(key)
        return keys

    def log_image(self, key: str, path: Path) -> None:
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=key, images=[str(path)])

    def close(self, succeeded: bool) -> None:
        for logger in self.loggers:
            logger.finalize("success" if succeeded else "failed")
            logger.save()
        finish_job_loggers(succeeded)

    def __enter__(self) -> "JobLoggers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc_type is None)
