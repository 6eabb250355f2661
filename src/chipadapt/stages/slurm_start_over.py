"""Which SLURM job started a run folder over (resume=false), so that the same job requeued after a preemption
(SLURM reruns its command line, resume=false included) continues its own work instead of discarding it again."""

import json
import os
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.stages.resume_settings import settings_changes

# Beside the checkpoints: the SLURM job that last started the folder over and its restart count then.
STARTED_OVER_BY = ".started_over_by.json"
# What names one SLURM job: its id, and for an array task the array's id and the task's index.
SLURM_JOB_KEYS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")


def slurm_job() -> dict | None:
    """This process's SLURM job (SLURM_JOB_KEYS that are set); None outside SLURM."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    return {key: os.environ[key] for key in SLURM_JOB_KEYS if os.environ.get(key)}


def slurm_restarts() -> int:
    """How many times SLURM has requeued this job (SLURM_RESTART_COUNT, unset before the first requeue)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def record_start_over_job(out: Path) -> None:
    """After a start-over's discard (rank 0): which SLURM job started the folder over, at which restart. The
    discard removed the earlier record: a start-over outside SLURM leaves none, so that a later requeue of the
    job that wrote it does not take this start-over's checkpoint for its own."""
    job = slurm_job()
    if job is not None:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "checkpoints" / STARTED_OVER_BY, {"job": job, "restarts": slurm_restarts()})


def requeued_start_over(out: Path, cfg: DictConfig) -> dict | None:
    """The SLURM job that started `out` over, when this process is that job requeued since (its restart count
    is higher than the start-over's) and its checkpoint records this run's very settings: resume=false then
    continues the job's own work. None outside SLURM, for another job (a deliberate rerun starts over), for a
    second command in the same job attempt, and for a requeue whose settings the user changed in between (a
    YAML edited before `scontrol requeue`): resumed, the settings check refused it and told it to start over with
    resume=false, which it gives already, at every restart; it starts over as asked, its checkpoint being the
    job's own start-over."""
    job = slurm_job()
    if job is None:
        return None
    try:
        record = json.loads((out / "checkpoints" / STARTED_OVER_BY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("job") != job:
        return None
    restarts = record.get("restarts")
    if not isinstance(restarts, int) or slurm_restarts() <= restarts:
        return None
    ckpt = out / "checkpoints" / "last.ckpt"
    if ckpt.exists():
        try:
            compared = settings_changes(ckpt, cfg)
        except ChipadaptError:  # unreadable: a start-over discards it, as asked
            return None
        if compared is None or compared[0]:
            return None
    return job
