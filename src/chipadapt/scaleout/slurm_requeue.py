"""Putting a SLURM job back in the queue after its warning signal, once its work is saved.

Who requeues: a launcher that had its own handler for the signal (submitit, USR2 by default:
`hydra/launcher=slurm`) is asked, and resubmits the job its way; in a plain `sbatch --requeue`
script, `scontrol requeue` is run here. Only rank 0 asks: every rank of a distributed job gets the
signal, and one requeue is enough. Lightning's own SLURM handler is never called: it would write a
second (hpc_ckpt) checkpoint."""

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from chipadapt.io.lock import is_secondary_rank

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    """The id SLURM requeues the job under and keeps across requeues: `<array job>_<task>` for a task
    of a job array (as SLURM's own `%A_%a` names it), else SLURM_JOB_ID; None outside SLURM."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID") or None


@dataclass
class Requeued:
    note: str  # what happened, for the job's last line and its manifest
    exit_status: int | None = None  # the status the launcher asked the process to exit with


def requeue_job(signum: int, launcher_handler: Callable | None) -> Requeued:
    if launcher_handler is not None:
        try:
            launcher_handler(signum, None)  # submitit: saves its resubmission, requeues, then sys.exit()
        except SystemExit as stop:
            # submitit's local executor reruns a task that exits with its requeue status: keep it.
            return Requeued(
                "requeued by the launcher: it resumes in the same folder",
                stop.code if isinstance(stop.code, int) else None,
            )
        except Exception as err:  # noqa: BLE001 (submitit refuses: timed out too many times)
            return Requeued(f"not requeued: {err}")
        return Requeued("the launcher was told")  # a secondary rank: submitit leaves it to rank 0
    job = slurm_job_id()
    if job is None:
        return Requeued("not a SLURM job, not requeued")
    # LOCAL_RANK and NODE_RANK too: the processes Lightning starts itself (trainer=ddp with trainer.devices
    # outside srun) have no RANK or SLURM_PROCID of their own, and each would requeue.
    if is_secondary_rank():
        return Requeued(f"SLURM job {job}: rank 0 requeues it")
    if shutil.which("scontrol") is None:
        return Requeued(f"SLURM job {job} not requeued: scontrol is not on PATH")
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode != 0:
        log.error("scontrol requeue %s failed: %s", job, result.stderr.strip())
        return Requeued(f"SLURM job {job} not requeued: scontrol requeue failed ({result.stderr.strip()})")
    return Requeued(f"SLURM job {job} requeued: it resumes in the same folder")
