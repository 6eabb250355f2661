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
