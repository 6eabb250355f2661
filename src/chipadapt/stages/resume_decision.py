"""Whether a training run resumes its last checkpoint, starts over or trains again, and the overwrite=true rule
over a published run. stages/common.py's training path asks here; nothing here builds a Trainer. The start-over
itself: start_over.py; what `model/` was published from: published_record.py; a requeued resume=false SLURM job:
slurm_start_over.py; a resume that would train nothing: finished_checkpoint.py; the other processes of a
distributed run take rank 0's answer: rank_0_decision.py."""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.finished_run import same_inputs, stopped_after_publishing
from chipadapt.io import folder_swap
from chipadapt.io.checkpoints import check_checkpoint
from chipadapt.io.launch_ranks import other_process_of_a_launch
from chipadapt.io.lock import run_folder_lock
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.stages.checkpoint_records import FINISHED_KEY
from chipadapt.stages.finished_checkpoint import finished_training, refuse_a_resume_that_trains_nothing
from chipadapt.stages.published_record import published_from
from chipadapt.stages.rank_0_decision import rank_0_decision
from chipadapt.stages.resume_settings import (
    WARNED,
    check_resume_settings,
    checkpoint_metadata,
    ends_with,
    settings_changes,
)
from chipadapt.stages.slurm_start_over import requeued_start_over, slurm_restarts
from chipadapt.stages.start_over import start_over_pending

log = logging.getLogger(__name__)


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
    processes a launcher started for a stage that trains take rank 0's answer (rank_0_decision.py), which
    pipeline.train hands on once it holds the folder's lock."""
    if "module" in (cfg.get("stage") or {}) and other_process_of_a_launch():
        return rank_0_decision(out)
    return _own_decision(cfg, out, check)


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
