"""The configured loggers of a job (`logger=csv|tensorboard|wandb`; an entry set to null is off),
told where the job's logging starts."""

from hydra.utils import instantiate


def build_loggers(logger_cfg, start_step: int | None = 0, new_run: bool = False) -> list:
    """Every logger of `logger_cfg`. `start_step` is the first step this job logs: a training run
    resumed from a checkpoint at step N logs N again, a fresh run and an evaluate.py or merge.py job
    log from 0. Loggers that keep files in the run folder (`start_at`: metrics.csv, TensorBoard) then
    drop what an earlier attempt logged from there on, which this job logs again; W&B cannot, its
    run continues instead (see `loggers.wandb`). None (a checkpoint whose step is not known): every
    earlier row and event is kept, as they were before loggers were told. `new_run`: a training run
    started over in its folder, whatever `resume` says (overwrite=true over a finished training), gets
    a new W&B run too, as resume=false does: the folder's run already holds the steps it logs again."""
    nodes = [node for node in (logger_cfg or {}).values() if node is not None]
    loggers = [instantiate(node, **_started_over(node, new_run)) for node in nodes]
    for logger in loggers:
        start_at = getattr(logger, "start_at", None)
        if start_at is not None and start_step is not None:
            start_at(start_step)
    return loggers


def _started_over(node, new_run: bool) -> dict:
    return {"continue_run": False} if new_run and "continue_run" in node else {}
