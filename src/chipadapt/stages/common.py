"""The one training path of every stage that trains: seed, trainer, resume, validation before and
after, saving and the manifest. A stage's recipe builds its DataModule and module (from the YAML's
`stage.datamodule` / `stage.module`) and hands them to `train_module`; nothing here names a module
class."""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt import interrupts
from chipadapt.batch_plan import check_trainer_world, world_size
from chipadapt.errors import ChipadaptError, TrainingDiverged
from chipadapt.io.checkpoint_io import use_same_folder_checkpoints
from chipadapt.io.hashing import fingerprint_folder
from chipadapt.io.launch_ranks import other_process_of_a_launch
from chipadapt.loggers.build import build_loggers
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import TOKENIZER_REPORT_NAME as REPORT_NAME
from chipadapt.models.hf_folder import context_length, resolve_model_folder
from chipadapt.models.token_bytes import byte_count_rule
from chipadapt.protocols import TrainingData, ValidatedModule
from chipadapt.quiet import silence_known_noise
from chipadapt.run_settings import by_name, named_folders
from chipadapt.scoring_rules import (
    BYTE_COUNT,
    BYTE_COUNT_NO_ADDED_SPACE,
    BYTE_COUNT_PIECES,
    FIRST_TOKEN,
    FIRST_TOKEN_SCORED,
)
from chipadapt.stages.checkpoint_records import RecordSettings
from chipadapt.stages.published_record import record_published
from chipadapt.stages.resume_decision import resume_checkpoint, resumes
from chipadapt.stages.resume_settings import checkpoint_step, trajectory_settings
from chipadapt.stages.slurm_start_over import record_start_over_job, slurm_job, slurm_restarts
from chipadapt.stages.start_over import discard_checkpoint, start_over_pending
from chipadapt.validation_change import validation_change_message

log = logging.getLogger(__name__)


def begin(cfg: DictConfig) -> None:
    """Before anything random is built: one seed for Python, numpy and torch (workers included)."""
    silence_known_noise()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)


def starting_model(cfg: DictConfig, manifest: RunManifest) -> Path:
    """The model folder a stage starts from: the configured model, through `tokenizer.adapt` (the
    domain tokenizer's resized model when `tokenizer=augmented`), recorded by content."""
    folder = instantiate(cfg.tokenizer.adapt)(resolve_model_folder(cfg.model))
    report = folder / REPORT_NAME
    if report.is_file():
        manifest.update("inputs", {"tokenizer_report": json.loads(report.read_text())})
    manifest.update("inputs", {"model_folder": str(folder), "model_files": fingerprint_folder(folder)})
    manifest.add_input("model", folder)
    return folder


def check_seq_len(cfg: DictConfig, folder: Path) -> None:
    """`data.seq_len` is the longest row the model sees in every stage (a packed DAPT row, an SFT row
    of one or more conversations, a conversation the attribute model rates): within its context."""
    context = context_length(folder)
    if cfg.data.seq_len > context:
        raise ChipadaptError(
            f"data.seq_len={cfg.data.seq_len} exceeds the model's context of {context} tokens ({folder}/config.json)"
        )


def record_data_inputs(cfg: DictConfig, manifest: RunManifest) -> None:
    """The data files by content: a changed corpus shows as a new fingerprint in the manifest."""
    for section in ("sources", "val_sources"):
        for name, source in (cfg.data.get(section) or {}).items():
            if source and source.get("path"):
                manifest.add_input(f"data.{section}.{name}", source.path)


def non_finite_weights(state: dict[str, torch.Tensor], step: int) -> str | None:
    """What is wrong with weights about to be published, when a floating-point tensor holds a NaN or
    an inf (one isfinite pass a tensor; a tensor left on the meta device has no values to check)."""
    bad = [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all())
    ]
    if not bad:
        return None
    return f"{len(bad)} of {len(state)} weight tensors are not finite at step {step} (first: {bad[0]})"


def diverged(cfg: DictConfig, out: Path, what: str) -> TrainingDiverged:
    """The failure of a run whose validation or weights went non-finite: nothing is published, and the
    checkpoints stay as they were written, the last good state or the first bad one, for inspection."""
    return TrainingDiverged(
        f"training diverged: {what} (optim.lr={OmegaConf.select(cfg, 'optim.lr')}); the model was not "
        f"published, its checkpoints are kept as they are for inspection in {out / 'checkpoints'}; a lower "
        "optim.lr with resume=false starts over"
    )


def publish_if_finite(cfg: DictConfig, out: Path, trainer: L.Trainer, model: torch.nn.Module, publish) -> None:
    """`publish()` on rank 0, unless the trained weights hold a NaN or an inf: the stages whose
    validation shows no loss (retriever, reranker, attribute model) would otherwise publish a diverged
    model, and a search over their learning rate would score it as any other trial. Checked on every
    rank (DDP keeps the weights identical): all stop as diverged, none goes on without the model."""
    bad_weights = non_finite_weights(model.state_dict(), trainer.global_step)
    if bad_weights:
        raise diverged(cfg, out, bad_weights)
    if trainer.is_global_zero:
        publish()


def build_trainer(
    cfg: DictConfig,
    out: Path,
    accumulation: int,
    start_step: int | None = 0,
    start_over: bool = False,
    tokenizer=None,  # the data's, whose byte count validation_settings records
) -> tuple[L.Trainer, dict]:
    """The Trainer of every training stage, and its callbacks by name. A group entry set to null
    (callbacks.progress=null, logger.csv=null) switches that callback or logger off. `start_step`:
    the first step this run logs (a resumed run's checkpoint step, None if unknown), where the loggers
    start. `start_over` (resume=false): the checkpoint not resumed is discarded as the loggers start over."""
    callbacks = {name: instantiate(c) for name, c in cfg.callbacks.items() if c is not None}
    try:
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            accumulate_grad_batches=accumulation,
            gradient_clip_val=cfg.optim.gradient_clip_val,
            logger=build_loggers(cfg.logger, start_step, new_run=start_over),
            callbacks=[
                *callbacks.values(),
                RecordSettings(trajectory_settings(cfg)),
                StartingMetrics(validation_settings(cfg, tokenizer), validation_folders(cfg)),
            ],
            default_root_dir=str(out),
        )
    except InstantiationException as err:
        refused = lightning_refusal(err)
        if refused is None:
            raise
        # trainer_schema checks what it knows of before the data is read; what Lightning refuses
        # beyond that is still the user's setting, told in one line.
        raise ChipadaptError(f"trainer: Lightning refuses these settings: {refused}") from None
    # The accumulation was computed for world_size(cfg.trainer) processes: a Trainer running others would
    # train another global batch than data.global_batch_size, and say nothing.
    check_trainer_world(world_size(cfg.trainer), trainer)
    use_same_folder_checkpoints(trainer)
    if start_over and trainer.is_global_zero:
        # before the first logger call below starts metrics.csv over
        checkpoint = OmegaConf.select(cfg, "callbacks.checkpoint") or {}
        discard_checkpoint(out, checkpoint.get("filename"), checkpoint.get("auto_insert_metric_name", True))
        record_start_over_job(out)
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:  # the whole resolved config, not only the module's hyperparameters
        logger.log_hyperparams(config)
    return trainer, callbacks


def lightning_refusal(err: BaseException) -> str | None:
    """The one-line message of the Lightning misconfiguration behind an instantiate error, if one is."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, (MisconfigurationException, ValueError)):
            return " ".join(str(cause).split())
        cause = cause.__cause__
    return None


# What decides which sequences a validation reads: a resume may change them (they are not training
# settings), and a "before" read on other sequences than "after" is no comparison.
VALIDATION_KEYS = (
    "data.val_fraction",
    "data.val_max_bytes",
    "data.val_max_conversations",
    "data.val_sources",
    "trainer.limit_val_batches",
)


def validation_folders(cfg: DictConfig) -> list[tuple[str, str]]:
    """The folders named by their config key in validation settings, as the resume check names them."""
    paths = cfg.get("paths")
    return named_folders(OmegaConf.to_container(paths, resolve=True) if paths is not None else None)


def validation_settings(cfg: DictConfig, tokenizer=None) -> dict:
    """VALIDATION_KEYS' values, folders by name (run_settings): a shared-data folder reached through a
    symlink, on another machine or from another install reads the same held-out text. With them the rules
    validation scores by (scoring_rules.py): a checkpoint written before a rule lacks it, so a run resumed
    across it drops the starting validation that the earlier rule measured, as after any changed setting.
    The byte count's only where the data's `tokenizer` counts otherwise than before (byte_count_rule): a
    byte-level BPE checkpoint keeps its starting validation. (One written between the first-token rule and
    its record, b455399, lacks that record and is told changed: a checkpoint keeps no version to tell it.)"""
    settings, folders = {}, validation_folders(cfg)
    for key in VALIDATION_KEYS:
        value = OmegaConf.select(cfg, key)  # a node keeps its place in cfg: interpolations resolve
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        settings[key] = by_name(value, folders)
    target = OmegaConf.select(cfg, "stage.datamodule._target_")
    # The datamodule's own word, as validation_step reads it (data/datamodule.py packs_documents).
    packed = bool(target) and getattr(get_class(target), "packs_documents", False)
    if getattr(tokenizer, "is_fast", False) and (rule := byte_count_rule(tokenizer)):
        # Every stage's bits per byte (models/token_bytes.py). Only packed documents have the prepended space
        # taken off (modules/causal_lm.py validation_step): other stages count as under the earlier mark, and
        # keep it, so their checkpoints from before it keep their starting validation.
        settings[BYTE_COUNT] = rule if packed or rule != BYTE_COUNT_NO_ADDED_SPACE else BYTE_COUNT_PIECES
    if packed:
        settings[FIRST_TOKEN] = FIRST_TOKEN_SCORED  # packed documents' rows (data/packing.py start_token)
    return settings


class StartingMetrics(L.Callback):
    """The validation before training, carried in every checkpoint with the settings it was read under:
    a run resumed after a preemption still reports its before/after comparison, unless it now
    validates on other sequences. With it its per-item sums where the module keeps them (the causal
    LM's `val_items`, a few floats per held-out document): what the comparison pairs item by item."""

    def __init__(self, settings: dict, folders: list[tuple[str, str]] | None = None):
        self.settings, self.values, self.items = settings, {}, {}
        # This run's folders, by which a checkpoint's settings recorded with their paths are read (an
        # earlier version recorded them as resolved); the installed package's own where none are given.
        self.folders = named_folders(None) if folders is None else folders
        # Each resume that changed the validation settings: {"step", "changed": {key: [before, after]}},
        # carried from checkpoint to checkpoint, so that every later attempt's manifest still has them.
        self.changes: list[dict] = []
        self._changed_now: dict | None = None  # this resume's change, told once the resumed step is known
        self.manifest: RunManifest | None = None  # where train_module records a change; None elsewhere

    def record(self, module: ValidatedModule) -> None:
        # Modules other than the causal LM's keep no items: their comparison is not paired.
        self.values, self.items = module.val_results, dict(getattr(module, "val_items", None) or {})

    def state_dict(self) -> dict:
        # Items as plain lists: a checkpoint is read with torch.load's weights_only where it can be.
        items = {split: np.asarray(table).tolist() for split, table in self.items.items()}
        return {"before": self.values, "settings": self.settings, "items": items, "changes": self.changes}

    def load_state_dict(self, state_dict: dict) -> None:
        before, recorded = dict(state_dict.get("before") or {}), state_dict.get("settings")
        recorded = by_name(recorded, self.folders) if isinstance(recorded, dict) else recorded
        items = {split: np.asarray(rows, dtype=np.float64) for split, rows in (state_dict.get("items") or {}).items()}
        self.changes = [dict(change) for change in state_dict.get("changes") or []]
        self._changed_now = None
        if recorded is not None and recorded != self.settings:
            # A key only one side has (data.val_max_sequences in a checkpoint of an older version) counts.
            keys = sorted(set(recorded) | set(self.settings))
            self._changed_now = {
                k: [recorded.get(k), self.settings.get(k)] for k in keys if recorded.get(k) != self.settings.get(k)
            }
            if before:
                log.warning(
                    "the starting model's validation is not reported: it was read with other %s",
                    ", ".join(self._changed_now),
                )
            before, items = {}, {}
        self.values, self.items = before, items

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resume that validates on other text: the curve goes on on other sequences from here, which
        no curve shows (a falling val/ curve that jumps up looks like a regression). Said with the step,
        and recorded in the run's manifest (`data.validation_changes`), which compare.py reads; so are
        the changes of earlier resumes, which this attempt's new manifest would otherwise not know."""
        if self._changed_now is not None:
            change = {"step": int(trainer.global_step), "changed": self._changed_now}
            self.changes.append(change)
            self._changed_now = None
            if trainer.is_global_zero:
                log.warning(validation_change_message(change))
        if self.changes and self.manifest is not None:
            self.manifest.update("data", {"validation_changes": self.changes})


@dataclass
class Trained:
    trainer: L.Trainer
    callbacks: dict
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    train_loss: float | None = None  # the last logged training loss
    # Per split, the item sums of the validation before and after (StartingMetrics); empty where the
    # module keeps none.
    before_items: dict = field(default_factory=dict)
    after_items: dict = field(default_factory=dict)


def train_module(
    cfg: DictConfig,
    out: Path,
    manifest: RunManifest,
    module: ValidatedModule,
    datamodule: TrainingData,
    save: Callable[[L.Trainer], None],
    accumulation: int = 1,
    validate_before: bool = False,
) -> Trained:
    """Fit `module` on `datamodule` (set up already) in the run folder, resuming from its last
    checkpoint; validate before (a fresh run, when asked) and after; `save(trainer)` writes the
    stage's output. SIGINT/SIGTERM are held until the optimizer step in flight completes (the
    interrupt callback then writes last.ckpt and stops)."""
    resume_from = resume_checkpoint(cfg, out, check=False)  # checked by pipeline.train
    # Where this run's logging starts: the loggers drop what the attempt it resumes logged after its checkpoint.
    start_step = checkpoint_step(Path(resume_from)) if resume_from else 0
    # A checkpoint not resumed (resume=false; overwrite=true over a finished training) goes as the curves start over.
    # A start-over a kill cut short (start_over_pending) is finished. The other processes of a distributed run
    # take rank 0's answer (resume_checkpoint), not the folder as rank 0 may have changed it since; rank 0 discards.
    start_over = (
        resume_from is None
        if other_process_of_a_launch()
        else (
            not resumes(cfg, out)
            or (resume_from is None and (out / "checkpoints" / "last.ckpt").exists())
            or start_over_pending(out)
        )
    )
    if start_over:
        tell_earlier_exports(out, manifest)
        if (job := slurm_job()) is not None:  # whose requeue continues this start-over (resume_decision.resumes)
            manifest.update("inputs", {"started_over_by_slurm_job": {**job, "restarts": slurm_restarts()}})
    elif resume_from:
        manifest.update("inputs", {"resumed": {"checkpoint": resume_from, "step": start_step}})
    trainer, callbacks = build_trainer(
        cfg, out, accumulation, start_step, start_over=start_over, tokenizer=getattr(datamodule, "tokenizer", None)
    )
    result = Trained(trainer, callbacks)
    starting = next(c for c in trainer.callbacks if isinstance(c, StartingMetrics))
    starting.manifest = manifest  # a resume that changes the validation text is recorded there
    if resume_from:
        log.info("resuming from %s", resume_from)
    elif validate_before:
        trainer.validate(module, datamodule=datamodule, verbose=False)
        starting.record(module)
        result.before = starting.values
        manifest.update("metrics", {"before": result.before})
    with interrupts.deferred():
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    result.before, result.before_items = starting.values, starting.items  # on resume, as the checkpoint recorded them
    # Read before the validation below, which starts Lightning's callback metrics afresh.
    if "train/loss" in trainer.callback_metrics:
        result.train_loss = float(trainer.callback_metrics["train/loss"])
    with interrupts.unmasked():  # a Ctrl-C inside the save below is told as one, not as the save's error
        # Fit validates at the end of its epoch; a run cut short by max_steps has not, so do it here.
        if module.last_val_step != trainer.global_step:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        result.after, result.after_items = module.val_results, dict(getattr(module, "val_items", None) or {})
        save(trainer)
        record_published(out, trainer)
    return result


def tell_earlier_exports(out: Path, manifest: RunManifest) -> None:
    """A start-over leaves the earlier run's exports (RUN/exports/step-N) where they are (they may have been
    copied or used), said in one line and recorded in the manifest (`inputs.earlier_run_exports`), which
    export.py reads to say a folder there holds the earlier run's export, not this run's."""
    folder = out / "exports"
    earlier = sorted(entry.name for entry in folder.iterdir() if entry.is_dir()) if folder.is_dir() else []
    if not earlier:
        return
    manifest.update("inputs", {"earlier_run_exports": earlier})
    log.warning(
        "%s holds exports of the earlier run, not of this one, kept as they are: %s", folder, ", ".join(earlier)
    )
