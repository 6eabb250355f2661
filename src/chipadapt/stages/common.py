"""The one training path of every stage that trains: seed, trainer, resume, validation before and
after, saving and the manifest. A stage's recipe builds its DataModule and module (from the YAML's
`stage.datamodule` / `stage.module`) and hands them to `train_module`; nothing here names a module
class."""

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from chipadapt import interrupts
from chipadapt.batch_plan import check_trainer_world, world_size
from chipadapt.errors import ChipadaptError, TrainingDiverged
from chipadapt.io import folder_swap
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.checkpoint_io import use_same_folder_checkpoints
from chipadapt.io.checkpoints import check_checkpoint
from chipadapt.io.hashing import fingerprint_folder, sha256_json
from chipadapt.io.lock import run_folder_lock
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.loggers.build import build_loggers
from chipadapt.manifest import RunManifest
from chipadapt.models.hf_folder import TOKENIZER_REPORT_NAME as REPORT_NAME
from chipadapt.models.hf_folder import context_length, resolve_model_folder
from chipadapt.protocols import TrainingData, ValidatedModule
from chipadapt.quiet import silence_known_noise
from chipadapt.run_settings import by_name, named_folders
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, FINISHED_KEY, RecordSettings
from chipadapt.stages.finished_checkpoint import finished_training
from chipadapt.stages.resume_settings import (
    WARNED,
    check_resume_settings,
    checkpoint_metadata,
    checkpoint_step,
    ends_with,
    settings_changes,
    trajectory_settings,
)
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
    cfg: DictConfig, out: Path, accumulation: int, start_step: int | None = 0, start_over: bool = False
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
                StartingMetrics(validation_settings(cfg), validation_folders(cfg)),
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
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:  # the whole resolved config, not only the module's hyperparameters
        logger.log_hyperparams(config)
    return trainer, callbacks


# Written first and removed last by a start-over (discard_checkpoint): a rerun that finds it finishes the
# start-over the kill cut short, rather than resuming what is left of the earlier run.
START_OVER_MARKER = ".start_over"
# Lightning's name of a step checkpoint when the callback's `filename` is not set.
DEFAULT_CHECKPOINT_NAME = "{epoch}-{step}"


def start_over_pending(out: Path) -> bool:
    """Whether a start-over in `out` was cut off before it finished discarding the earlier run's checkpoints."""
    return (out / "checkpoints" / START_OVER_MARKER).exists()


def step_checkpoint_name(filename: str | None, metric_names: bool = True) -> re.Pattern:
    """The names the checkpoint callback gives step checkpoints for its `filename` (Lightning's
    `{epoch}-{step}` where unset): each `{metric}` becomes `metric=VALUE` (`metric_names`: the callback's
    auto_insert_metric_name) or its value, with `.ckpt` and a `-vN` version after it."""
    parts = re.split(r"(\{[^{}]*\})", filename or DEFAULT_CHECKPOINT_NAME)
    pattern = ""
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            name = re.escape(part[1:-1].split(":")[0].strip())
            pattern += f"{name}=[^/]+?" if metric_names else "[^/]+?"
        else:
            pattern += re.escape(part)
    return re.compile(f"{pattern}(?:-v\\d+)?\\.ckpt")


def holds_our_records(entry: Path) -> bool:
    """Whether a checkpoint holds what RecordSettings writes into every checkpoint of this tool (its metadata
    read without its tensors); a file that is no checkpoint, or a folder without metadata, does not."""
    try:
        content = checkpoint_metadata(entry)
    except ChipadaptError:
        return False
    return isinstance(content, dict) and CHECKPOINT_KEY in content


def discard_checkpoint(out: Path, filename: str | None = None, metric_names: bool = True) -> None:
    """resume=false: the folder's checkpoints go at the moment its curves start over (metrics.csv is
    cut to the new run's rows, TensorBoard's purge_step hides the old events), not when the new run's
    first checkpoint replaces them. Kept until then, a start-over killed before that checkpoint left
    the old run's checkpoint beside the new run's first rows, and the next rerun resumed it and
    logged on below them: one curve of two runs, the old run's early steps lost all the same. The
    user asked to start over; keeping the checkpoint and not its curves helps nobody. The earlier run's
    step checkpoints go too, not only `last.ckpt`: those of save_top_k=-1 that the new run does not reach
    (a shorter run) were otherwise left under the new run's name, and export.py run=RUN step=N exported the
    old run's weights as the new run's. Only what the checkpoint callback writes goes: `last.ckpt` and the
    names of its `filename` (`filename`, `metric_names`) that hold this tool's records; anything else in the folder (a
    checkpoint copied there by hand, another tool's) is the user's, kept and named. Each is renamed aside
    first (one atomic step; a folder checkpoint's removal takes long), then removed, with what an earlier
    replacement or discard left (hidden names, ours). START_OVER_MARKER is written before the first rename
    and removed after the last: a kill in between leaves it, and the rerun finishes the start-over."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return
    marker = folder / START_OVER_MARKER
    write_json_atomic(marker, {"started_over": True})
    ckpt = folder / "last.ckpt"
    names = step_checkpoint_name(filename, metric_names)
    ours, kept = [], []
    for entry in sorted(folder.glob("*.ckpt")):
        if entry == ckpt:
            continue
        (ours if names.fullmatch(entry.name) and holds_our_records(entry) else kept).append(entry)
    for entry in [ckpt, *ours]:
        aside = folder / f".{entry.name}.discarded"
        if entry.exists() or entry.is_symlink():
            folder_swap.discard(aside)
            os.replace(entry, aside)
            if entry == ckpt:
                log.warning("%s, not resumed, is discarded; the run and its curves start over", ckpt)
        for leftover in (aside, folder_swap.partial_path(entry), folder_swap.old_path(entry)):
            folder_swap.discard(leftover)
    if ours:
        log.warning(
            "%d step checkpoint%s of the earlier run in %s discarded as well (%s)",
            len(ours),
            "" if len(ours) == 1 else "s",
            folder,
            ", ".join(entry.name for entry in ours),
        )
    for leftover in folder.glob(".*.ckpt.discarded"):  # what a start-over cut off renamed aside
        folder_swap.discard(leftover)
    if kept:
        log.warning(
            "kept in %s, not the checkpoint callback's (another name, or no chipadapt records): %s",
            folder,
            ", ".join(entry.name for entry in kept),
        )
    # What model/ was published from is the earlier run's: kept, it matched the new training's checkpoint at
    # the same step and settings (an overwrite=true retrain), which a requeue then took as published and
    # started over again, each preemption losing the whole training. Without it, model/'s time decides.
    (out / PUBLISHED_RECORD).unlink(missing_ok=True)
    marker.unlink()


def lightning_refusal(err: BaseException) -> str | None:
    """The one-line message of the Lightning misconfiguration behind an instantiate error, if one is."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, (MisconfigurationException, ValueError)):
            return " ".join(str(cause).split())
        cause = cause.__cause__
    return None


def resume_checkpoint(cfg: DictConfig, out: Path, check: bool = True) -> str | None:
    """`DIR/checkpoints/last.ckpt` when the run folder has one and `resume` is on; a checkpoint that
    cannot be read (a crash while it was written, a damaged disk), or was written by a run with other
    settings, is a one-line error (`check`: pipeline.train checks before anything is written). A
    folder checkpoint whose replacement was cut off between its two renames is put back first."""
    if check:
        refuse_if_folder_in_use(out)
    ckpt = out / "checkpoints" / "last.ckpt"
    if cfg.resume:
        folder_swap.recover(ckpt, run_folder=out)  # never under a job that holds the folder (folder_swap.recover)
    if cfg.resume and start_over_pending(out):
        # A start-over killed while it discarded the earlier run's checkpoints: finished (train_module), never
        # resumed from what it left.
        if check:
            log.info("%s: a start-over was cut off here; it is finished and training starts from step 0", ckpt.parent)
        return None
    if not cfg.resume or not ckpt.exists():
        # An earlier attempt in this folder (its manifest) left no checkpoint to resume: killed before its
        # first one. Said once (pipeline.train's check), so that a rerun from step 0 is not taken for a
        # resume; nothing for a new folder, nor for the stages that train nothing (tokenizer, annotate).
        if check and cfg.resume and "module" in cfg.stage and (out / "manifest.json").is_file():
            log.info("no checkpoint in %s: training starts from step 0", ckpt.parent)
        return None
    if check:
        check_checkpoint(ckpt)
    # overwrite=true over a finished, published run trains again from the start, as a fresh run would,
    # with these settings or others. Not before its model/ is published: a requeue of the same line
    # after a preemption between the last checkpoint and the save resumes, and publishes.
    if cfg.overwrite and (out / "model").is_dir() and overwrite_starts_over(ckpt, cfg):
        return None
    if check:
        check_resume_settings(ckpt, cfg)
    return str(ckpt)


def overwrite_starts_over(ckpt: Path, cfg: DictConfig) -> bool:
    """Whether overwrite=true over a run whose `model/` is published trains again from step 0 rather than
    resuming `ckpt`. A checkpoint of a training done at this length: always (resuming trains nothing). One
    done at another length: unless the run only asks to be trained longer, the one case the README has
    continue from the finished checkpoint. A shorter length, or other settings, start over: resumed, the
    first trained nothing and published the old weights, the second was refused as "written by a run with
    other settings" though overwrite=true had asked for exactly that run. A checkpoint whose training is
    not done (a requeue of this overwrite=true line after a preemption) is resumed; so is one done with these
    very settings that `model/` was not published from (the requeue after a preemption between the last
    checkpoint and the publish: started over, the whole training was lost). A checkpoint of an earlier
    release, which did not record whether its training was done, at this length or a shorter one: starts
    over (resumed, it trained nothing and published its own length's weights again)."""
    content = checkpoint_metadata(ckpt) or {}
    compared = settings_changes(ckpt, cfg)
    if compared is not None and not compared[0] and not published_from(ckpt, content):
        log.info(
            "%s is a later checkpoint than the published %s: resumed, and published", ckpt, ckpt.parent.parent / "model"
        )
        return False
    max_steps = OmegaConf.select(cfg, "trainer.max_steps")
    if FINISHED_KEY not in content and isinstance(max_steps, int) and max_steps >= 0:
        if compared and any(not ends_with(key, WARNED) for key in compared[0]):
            return True  # other settings: not a continuation (resumed, the settings check refused it)
        return not trains_longer(compared[1] if compared else {}, cfg, content.get("global_step"))
    if finished_training(ckpt, cfg):
        return True
    if not content.get(FINISHED_KEY) or compared is None:
        return False
    changed, recorded, _ = compared
    if any(not ends_with(key, WARNED) for key in changed):
        return True
    return not trains_longer(recorded, cfg, content.get("global_step"))


# Beside model/: what it was published from (the checkpoint's step and recorded settings), so that overwrite=true
# tells a finished checkpoint whose publish a preemption cut off from the rerun of a published run.
PUBLISHED_RECORD = ".published_from.json"


def published_record(step: int, settings: object) -> dict:
    return {"step": step, "settings": sha256_json(settings)}


def published_from(ckpt: Path, content: dict) -> bool:
    """Whether the run folder's `model/` was published from the training `ckpt` holds: its record says so
    (written after each publish); for a folder published before the record was kept, `model/` written after
    the checkpoint (a run saves its last checkpoint, then publishes)."""
    out = ckpt.parent.parent
    try:
        record = json.loads((out / PUBLISHED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict):
        return record == published_record(content.get("global_step"), content.get(CHECKPOINT_KEY))
    published = out / "model" / "config.json"
    return not published.is_file() or published.stat().st_mtime_ns >= ckpt.stat().st_mtime_ns


def record_published(out: Path, trainer: L.Trainer) -> None:
    """After `model/` is published: the step and settings it was trained to, as its last checkpoint records
    them (RecordSettings). A kill before this line leaves the previous record: the checkpoint then reads as
    not published, and a rerun resumes it and publishes the same weights again, which costs nothing."""
    record = next((c for c in trainer.callbacks if isinstance(c, RecordSettings)), None)
    if record is not None and trainer.is_global_zero:
        write_json_atomic(out / PUBLISHED_RECORD, published_record(int(trainer.global_step), record.settings))


def trains_longer(recorded: dict, cfg: DictConfig, step: object) -> bool:
    """Whether `cfg`'s length goes beyond a finished training recorded with `recorded` at `step`."""
    max_steps = OmegaConf.select(cfg, "trainer.max_steps")
    if isinstance(max_steps, int) and max_steps >= 0:
        return isinstance(step, int) and max_steps > step
    epochs, before = OmegaConf.select(cfg, "trainer.max_epochs"), recorded.get("trainer.max_epochs")
    if not isinstance(epochs, int) or epochs < 0:
        return True  # unbounded
    return isinstance(before, int) and 0 <= before < epochs


def refuse_if_folder_in_use(out: Path) -> None:
    """The refusal of a second command in a run folder a live job holds, before the resume check says
    anything: its lines (no checkpoint, resuming with other settings) went to the log file Hydra opened
    in that folder, the running job's train.log, and read as the running job's. The lock is taken and
    given back at once (io/lock.py names the holder); the job takes it again in recorded_job."""
    if folder_lock_held(out) is True:
        with run_folder_lock(out):
            pass  # released since the probe: the job goes on and takes the lock for itself


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


def validation_settings(cfg: DictConfig) -> dict:
    """VALIDATION_KEYS' values, folders by name (run_settings): a shared-data folder reached through a
    symlink, on another machine or from another install reads the same held-out text."""
    settings, folders = {}, validation_folders(cfg)
    for key in VALIDATION_KEYS:
        value = OmegaConf.select(cfg, key)  # a node keeps its place in cfg: interpolations resolve
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        settings[key] = by_name(value, folders)
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
    # A start-over a kill cut short (start_over_pending) is finished.
    start_over = (
        not cfg.resume
        or (resume_from is None and (out / "checkpoints" / "last.ckpt").exists())
        or start_over_pending(out)
    )
    if start_over:
        tell_earlier_exports(out, manifest)
    elif resume_from:
        manifest.update("inputs", {"resumed": {"checkpoint": resume_from, "step": start_step}})
    trainer, callbacks = build_trainer(cfg, out, accumulation, start_step, start_over=start_over)
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
