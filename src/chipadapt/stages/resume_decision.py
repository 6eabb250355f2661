"""Whether a training run resumes its last checkpoint, starts over or trains again: the start-over
that discards the checkpoint callback's own files (and finishes one a kill cut short), and the overwrite=true
rule over a published run. stages/common.py's training path asks here; nothing here builds a Trainer. What
`model/` was published from: published_record.py; a requeued resume=false SLURM job: slurm_start_over.py;
the other processes of a distributed run take rank 0's answer: rank_0_decision.py."""

import logging
import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.batch_plan import world_size
from chipadapt.errors import ChipadaptError
from chipadapt.finished_run import same_inputs, stopped_after_publishing
from chipadapt.io import folder_swap
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.checkpoints import check_checkpoint
from chipadapt.io.lock import is_secondary_rank, run_folder_lock
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, FINISHED_KEY
from chipadapt.stages.finished_checkpoint import finished_training, same_length
from chipadapt.stages.published_record import PUBLISHED_RECORD, published_from
from chipadapt.stages.rank_0_decision import rank_0_decision, record_rank_0_decision
from chipadapt.stages.resume_settings import (
    WARNED,
    check_resume_settings,
    checkpoint_metadata,
    ends_with,
    settings_changes,
)
from chipadapt.stages.slurm_start_over import STARTED_OVER_BY, requeued_start_over, slurm_restarts

log = logging.getLogger(__name__)

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
    # Which SLURM job started the folder over is the earlier start-over's: kept, a later requeue of that job took
    # this start-over's checkpoint (a resume=false run by hand, say) for its own. record_start_over_job writes
    # this one's, within SLURM.
    (folder / STARTED_OVER_BY).unlink(missing_ok=True)
    marker.unlink()


def resumes(cfg: DictConfig, out: Path, tell: bool = False) -> bool:
    """Whether this run resumes its folder's checkpoint: `resume`, or a requeue of the resume=false SLURM job
    that started the folder over (`tell`: said once, by pipeline.train's check)."""
    if cfg.resume:
        return True
    job = requeued_start_over(out, cfg)
    if job is not None and tell:
        log.info(
            "resume=false, but SLURM job %s was requeued (SLURM_RESTART_COUNT=%d) after it started %s over: "
            "it continues its own checkpoints instead of discarding them",
            " ".join(f"{key}={value}" for key, value in job.items()),
            slurm_restarts(),
            out,
        )
    return job is not None


def resume_checkpoint(cfg: DictConfig, out: Path, check: bool = True) -> str | None:
    """`DIR/checkpoints/last.ckpt` when the run folder has one and `resume` is on; a checkpoint that
    cannot be read (a crash while it was written, a damaged disk), or was written by a run with other
    settings, is a one-line error (`check`: pipeline.train checks before anything is written). A
    folder checkpoint whose replacement was cut off between its two renames is put back first. The other
    processes of a distributed run take rank 0's answer (rank_0_decision.py), which its check hands on."""
    if is_secondary_rank():
        return rank_0_decision(out)
    resumed = _own_decision(cfg, out, check)
    if check:
        record_rank_0_decision(out, resumed, world_size(cfg.trainer) if "trainer" in cfg else 1)
    return resumed


def _own_decision(cfg: DictConfig, out: Path, check: bool) -> str | None:
    if check:
        refuse_if_folder_in_use(out)
    ckpt = out / "checkpoints" / "last.ckpt"
    resume = resumes(cfg, out, tell=check)
    if resume:
        folder_swap.recover(ckpt, run_folder=out)  # never under a job that holds the folder (folder_swap.recover)
    if resume and start_over_pending(out):
        # A start-over killed while it discarded the earlier run's checkpoints: finished (train_module), never
        # resumed from what it left.
        if check:
            log.info("%s: a start-over was cut off here; it is finished and training starts from step 0", ckpt.parent)
        return None
    if not resume or not ckpt.exists():
        # An earlier attempt in this folder (its manifest) left no checkpoint to resume: killed before its
        # first one. Said once (pipeline.train's check), so that a rerun from step 0 is not taken for a
        # resume; nothing for a new folder, nor for the stages that train nothing (tokenizer, annotate).
        if check and resume and "module" in cfg.stage and (out / "manifest.json").is_file():
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
        refuse_a_resume_that_trains_nothing(ckpt, cfg)
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
    if compared is not None and not compared[0] and own_publish_cut_short(ckpt, cfg, content):
        log.info(
            "%s was published from %s by an attempt of this overwrite=true run, with these settings and inputs, that "
            "stopped before recording itself completed: resumed (no step trained) and published again, not trained "
            "again (to train it again: resume=false overwrite=true)",
            ckpt.parent.parent / "model",
            ckpt,
        )
        return False
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


def own_publish_cut_short(ckpt: Path, cfg: DictConfig, content: dict) -> bool:
    """Whether `model/` was published from `ckpt` by the folder's last attempt, this very run, which stopped
    before recording itself completed (finished_run.stopped_after_publishing, overwrite aside: an overwrite=true
    line killed between its publish and its manifest's last write). Its requeue completes that run; started over,
    a continuation (6 steps, then trainer.max_steps=8 overwrite=true) became 8 fresh steps. Only an attempt that
    was itself overwrite=true, with this run's inputs by content as it recorded them (the starting model and each
    data source, compared as pipeline.finished_before compares them: a base model retrained at the same path is
    another run, trained again); a completed run's manifest is no such attempt: overwrite=true over it trains
    again. Decided once a process, before this attempt's manifest replaces the folder's (pipeline.train's check),
    and kept for the runner's call after it; rank 0 alone decides (rank_0_decision.py)."""
    stat = ckpt.stat()
    asked = (str(ckpt.resolve()), stat.st_mtime_ns, stat.st_size)
    if asked not in _OWN_PUBLISH:
        stopped = stopped_after_publishing(OmegaConf.merge(cfg, {"overwrite": False}), ckpt.parent.parent)
        _OWN_PUBLISH[asked] = (
            stopped is not None
            and (stopped.get("config") or {}).get("overwrite") is True
            and published_from(ckpt, content, recorded_only=True)
            and same_inputs(cfg, stopped)
        )
    return _OWN_PUBLISH[asked]


_OWN_PUBLISH: dict[tuple, bool] = {}


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


def refuse_a_resume_that_trains_nothing(ckpt: Path, cfg: DictConfig) -> None:
    """Before anything is written: a resume that would train no step though `trainer.max_steps` asks for more than
    the checkpoint holds, its loop state having reached `trainer.max_epochs` already (which Lightning stops at
    first: an epoch-bounded checkpoint of an earlier release, or one continued with a longer max_steps), is
    refused in one line. Resumed, the run completed having trained nothing and published the checkpoint's weights
    as the asked length's; refused after the fit, its failed manifest then stood in the way of the command that
    made the run. A checkpoint done at this very length (the requeue of a run stopped between its last checkpoint
    and its publish) trains nothing by right."""
    max_steps, max_epochs = OmegaConf.select(cfg, "trainer.max_steps"), OmegaConf.select(cfg, "trainer.max_epochs")
    content = checkpoint_metadata(ckpt) or {}
    step = content.get("global_step")
    if not isinstance(step, int) or not isinstance(max_steps, int) or max_steps <= step:
        return
    if not isinstance(max_epochs, int) or max_epochs < 0:
        return
    recorded = content.get(CHECKPOINT_KEY)
    if content.get(FINISHED_KEY) is True and isinstance(recorded, dict) and same_length(recorded, cfg):
        return
    epochs = epochs_done(content)
    if epochs is None or epochs < max_epochs:
        return
    raise ChipadaptError(
        f"trainer.max_steps={max_steps}: {ckpt} (step {step}, {epochs} epoch{'' if epochs == 1 else 's'} done) "
        f"has reached trainer.max_epochs={max_epochs} already, so resuming it would train no step; nothing was "
        f"written. trainer.max_epochs=-1 trains on to step {max_steps}, resume=false starts over"
    )


def epochs_done(content: dict) -> int | None:
    """The epochs a checkpoint's fit loop has run to their end, as Lightning counts them when it decides to stop
    (its epoch progress); the checkpoint's `epoch` where the loop state is missing."""
    loops = content.get("loops")
    fit = loops.get("fit_loop") if isinstance(loops, dict) else None
    progress = fit.get("epoch_progress") if isinstance(fit, dict) else None
    current = progress.get("current") if isinstance(progress, dict) else None
    processed = current.get("processed") if isinstance(current, dict) else None
    if isinstance(processed, int):
        return processed
    epoch = content.get("epoch")
    return epoch if isinstance(epoch, int) else None
