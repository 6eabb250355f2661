"""A checkpoint remembers the settings of the run that wrote it, and a resume checks them.

Resuming continues the optimizer, the data order and the lr schedule from `last.ckpt`; a rerun in
that folder with another lr, dataset or model would silently carry on the old run under the new
run's name. So every checkpoint stores the run's trajectory settings (the resolved config without
what only says where files go, how progress is shown or what hardware runs it), and a resume with
different ones is an error. Only the run's length may change: extending a finished run is how one
trains longer, but the lr schedule is then recomputed for the new length, which is said."""

import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "chipadapt_settings"
# Where outputs go, what is logged or shown, and which machine runs it: none changes what is trained.
NOT_TRAJECTORY = {
    "paths",
    "logger",
    "callbacks",
    "hydra",
    "resume",
    "overwrite",
    "optimized_metric",
    "plan",
    "hparams_search",
    "matmul_precision",
    "trainer",  # devices, strategy, logging cadence; its keys that shape training are below
}
TRAINER_KEYS = ("precision", "gradient_clip_val")
LENGTH_KEYS = ("trainer.max_steps", "trainer.max_epochs")
SHOWN = 6  # changed keys named in the error


def trajectory_settings(cfg: DictConfig) -> dict[str, object]:
    """The resolved config as dotted keys, without the sections that do not shape training."""
    config = OmegaConf.to_container(cfg, resolve=True)
    kept = {key: value for key, value in config.items() if key not in NOT_TRAJECTORY}
    trainer = config.get("trainer") or {}
    kept["trainer"] = {key: trainer.get(key) for key in (*TRAINER_KEYS, "max_steps", "max_epochs")}
    return dict(flatten(kept))


def flatten(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        elif not str(key).endswith("num_workers"):  # loader processes: the same batches either way
            yield f"{prefix}{key}", value


class RecordSettings(L.Callback):
    """Writes the run's trajectory settings into every checkpoint it saves."""

    def __init__(self, settings: dict[str, object]):
        self.settings = settings

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.settings


def check_resume_settings(ckpt: Path, cfg: DictConfig) -> None:
    """Stop when `ckpt` was written by a run with other settings; say when only its length changed."""
    if not ckpt.is_file():  # a sharded checkpoint folder (DeepSpeed): its settings are not read here
        return
    # mmap: the tensors are not read, only the small dictionaries around them.
    recorded = torch.load(ckpt, map_location="cpu", mmap=True, weights_only=False).get(CHECKPOINT_KEY)
    if recorded is None:
        log.info("%s predates recorded settings: resumed without comparing them", ckpt)
        return
    current = trajectory_settings(cfg)
    changed = sorted(key for key in recorded.keys() | current.keys() if recorded.get(key) != current.get(key))
    different = [key for key in changed if key not in LENGTH_KEYS]
    if different:
        shown = ", ".join(f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}" for key in different[:SHOWN])
        more = f" and {len(different) - SHOWN} more" if len(different) > SHOWN else ""
        raise ChipadaptError(
            f"{ckpt} was written by a run with other settings ({shown}{more}); rerun with that run's settings "
            "to resume it, or give this run its own hydra.run.dir"
        )
    if changed:
        lengths = ", ".join(f"{key} {recorded.get(key)} -> {current.get(key)}" for key in changed)
        schedule = (
            "the lr schedule is recomputed for the new length, so the lr jumps at the resumed step"
            if cfg.optim.get("scheduler")
            else "the lr is constant, so only the end moves"
        )
        log.warning("resuming %s with another length (%s): %s", ckpt, lengths, schedule)
