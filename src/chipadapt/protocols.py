"""The typed contracts between the layers: what a stage runner, a trained module, a training
DataModule and an evaluation task promise, so callers use attributes instead of probing for them."""

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from omegaconf import DictConfig


class StageRunner(Protocol):
    """`stage.runner` of every stage (a `_partial_` function in stages/): runs it, returns its metrics."""

    def __call__(self, cfg: DictConfig, out: Path, manifest: Any) -> dict: ...


@runtime_checkable
class ValidatedModule(Protocol):
    """A LightningModule the common training path can validate: the metrics of its last validation
    and the global step it ran at (None before any)."""

    val_results: dict
    last_val_step: int | None


@runtime_checkable
class TrainingData(Protocol):
    """A training DataModule after `setup("fit")`: its statistics (with `train_sequences`, the
    examples one epoch holds) and the names of its validation splits, in loader order."""

    stats: dict
    val_split_names: list[str]


@runtime_checkable
class EvalTask(Protocol):
    """An evaluation task (`eval=[...]`): `run` scores a model (None when `needs_model` is false) and
    leaves its per-item records in `items` (None: the task has none)."""

    needs_model: bool
    items: list[dict] | None

    def run(self, model, tokenizer) -> dict: ...
