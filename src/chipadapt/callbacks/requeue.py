"""SLURM requeue with exact resume: on the scheduler's warning signal before a time limit or a
preemption, finish the optimizer step in flight, write `checkpoints/last.ckpt`, requeue the job and
stop. The requeued job runs in the same folder (submitit reruns the same Hydra job; `sbatch
--requeue` reuses it), where `resume=true` continues from that checkpoint: same step, same data
position (the sampler's state is in the checkpoint).

Who requeues: a launcher that installed its own handler for the signal (submitit, USR2 by
default: `hydra/launcher=slurm`) is called after the checkpoint is written and resubmits the job;
with a plain `sbatch --signal=B:USR1@120` script, `scontrol requeue $SLURM_JOB_ID` is run here.
Lightning's own SLURM handler is not chained: it would write a second (hpc_ckpt) checkpoint."""

import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import lightning as L

from chipadapt import interrupts

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID")


class RequeueOnSignal(L.Callback):
    def __init__(self, signals: list[str]):
        self.signals = [getattr(signal, name) for name in signals]
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._step = None
        self._stop: int | None = None  # the signal to stop for, once its checkpoint is written

    def _record(self, signum, frame) -> None:
        self.received = signum  # acted on at the next step boundary, never mid-step

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its handlers (they are installed just before training starts).
        self._step = trainer.global_step
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._record)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step:  # mid-accumulation: the step is not complete yet
            return
        self._step = trainer.global_step
        received = self.received
        if trainer.world_size > 1:  # every rank stops at the same step, or the checkpoint deadlocks
            received = trainer.strategy.broadcast(received, src=0)
        if received is None:
            return
        ckpt = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(ckpt)
        log.warning("%s at step %d: wrote %s", signal.Signals(received).name, trainer.global_step, ckpt)
        self._stop = received

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Stopping here rather than right after the checkpoint lets Lightning log the last step's
        # metrics first; nothing has been trained since the checkpoint.
        if self._stop is None:
            return
        if trainer.is_global_zero:
            self.requeue(self._stop)
        raise interrupts.Interrupted(self._stop)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._stop is not None:
            log.warning("training finished at the checkpointed step: nothing to requeue")

    def requeue(self, signum: int) -> None:
        previous = self._previous.get(signum)
        launcher_handler = callable(previous) and not type(previous).__module__.startswith("lightning")
        if launcher_handler:
            try:
                previous(signum, None)  # submitit: resubmits the job, then exits
            except SystemExit:
                pass
            return
        job = slurm_job_id()
        if job and shutil.which("scontrol"):
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode != 0:
                log.error("scontrol requeue %s failed: %s", job, result.stderr.strip())
        else:
            log.warning("not a SLURM job: stopped; rerun with the same hydra.run.dir to resume from the checkpoint")
