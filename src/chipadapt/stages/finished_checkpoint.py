"""Whether a checkpoint ends a training that is done at a config's length: what `overwrite=true` over a
completed run asks (stages/resume_decision.resume_checkpoint), so that it starts over instead of resuming a finished
checkpoint and publishing the old weights again. Checkpoints of this version record it (FINISHED_KEY); those
of earlier releases are judged by what they and their run folder hold."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, FINISHED_KEY
from chipadapt.stages.resume_settings import LENGTH, checkpoint_metadata, run_manifest


def finished_training(ckpt: Path, cfg: DictConfig) -> bool:
    """`ckpt` ends a training that was done at this config's length (`trainer.max_steps`,
    `trainer.max_epochs` as recorded in it): resuming it trains nothing. `overwrite=true` over a completed
    run so starts over, as a fresh run would, instead of publishing the old run's weights again (after a
    change the settings do not show: the code, a model replaced in place); a longer length still
    continues the finished run from it. A checkpoint written before chipadapt recorded whether its
    training was done is judged by what it and its run folder hold (`finished_before_recorded`)."""
    content = checkpoint_metadata(ckpt) or {}
    recorded = content.get(CHECKPOINT_KEY)
    if FINISHED_KEY not in content:
        return finished_before_recorded(ckpt, content, cfg)
    if not content[FINISHED_KEY] or not isinstance(recorded, dict):
        return False
    return same_length(recorded, cfg)


def same_length(recorded: dict, cfg: DictConfig) -> bool:
    return all(recorded.get(key) == OmegaConf.select(cfg, key) for key in LENGTH)


def finished_before_recorded(ckpt: Path, content: dict, cfg: DictConfig) -> bool:
    """Whether a checkpoint of a release that did not record FINISHED_KEY ends its training at
    this config's length. Reading it as unfinished resumed it: `overwrite=true` over such a completed run
    trained 0 steps and published the old weights again. Its length is in its settings, or for one older
    still in its folder's manifest. Finished: its step reached `max_steps`, or the folder's manifest says
    its last attempt completed at this length (that attempt wrote `last.ckpt` at its last step); not
    finished: neither, and only `max_steps` bounds the run; otherwise (an epoch-bounded run whose last
    attempt did not complete) it cannot be told, and the run stops rather than guess. The answer is kept
    for the process: pipeline.train asks before the attempt's manifest replaces the folder's, the stage's
    runner again after it."""
    stat = ckpt.stat()
    asked = (str(ckpt.resolve()), stat.st_mtime_ns, stat.st_size, *(OmegaConf.select(cfg, key) for key in LENGTH))
    if asked not in _DECIDED:
        _DECIDED[asked] = _finished_before_recorded(ckpt, content, cfg)
    return _DECIDED[asked]


_DECIDED: dict[tuple, bool] = {}


def _finished_before_recorded(ckpt: Path, content: dict, cfg: DictConfig) -> bool:
    manifest = run_manifest(ckpt.parent.parent)
    recorded = content.get(CHECKPOINT_KEY)
    if not isinstance(recorded, dict):
        trainer = (manifest.get("config") or {}).get("trainer") or {}
        recorded = {key: trainer.get(key.split(".")[-1]) for key in LENGTH} if trainer else None
    if recorded is not None:
        if not same_length(recorded, cfg):
            return False  # trained longer: continued from it
        max_steps, step = recorded.get("trainer.max_steps"), content.get("global_step")
        if isinstance(max_steps, int) and max_steps >= 0 and isinstance(step, int) and step >= max_steps:
            return True
        trainer = (manifest.get("config") or {}).get("trainer") or {}
        if manifest.get("status") == "completed" and all(
            trainer.get(k.split(".")[-1]) == recorded.get(k) for k in LENGTH
        ):
            return True
        max_epochs = recorded.get("trainer.max_epochs")
        if isinstance(max_steps, int) and max_steps >= 0 and (max_epochs is None or max_epochs < 0):
            return False
    raise ChipadaptError(
        f"{ckpt} was written by an earlier chipadapt, which did not record whether its training was done, and "
        f"its run's manifest (status: {manifest.get('status')}) does not tell: resume=false trains this run "
        "from the start (its checkpoint is discarded as training starts)"
    )


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
