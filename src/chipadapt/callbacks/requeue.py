"""SLURM's warning signals during a fit that no entry point started (a notebook, a test calling
`pipeline.train`): the entry points install the handlers of `chipadapt.interrupts` as the job starts,
and this callback installs them for the fit where nothing did, so that USR1/USR2 stop training like
SIGTERM (the interrupt callback writes `checkpoints/last.ckpt` at the step boundary) and then requeue
the job (`chipadapt.scaleout.slurm_requeue`). The requeued job runs in the same folder (submitit
reruns the same Hydra job; `sbatch --requeue` reruns the command, whose default folder the job id
names with the command line), where `resume=true` continues from that checkpoint: same step, same data position."""

import signal

import lightning as L

from chipadapt import interrupts


class RequeueOnSignal(L.Callback):
    def __init__(self, signals: list[str]):
        self.signals = [getattr(signal, name) for name in signals]
        self._replaced: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its handlers (just before training starts): its SLURM handler
        # would write a second (hpc_ckpt) checkpoint and requeue on its own.
        missing = [sig for sig in self.signals if not interrupts.owns(sig)]
        if missing:
            interrupts.reset()  # no entry point started this job: nothing it received is ours
            self._replaced = interrupts.take_over(missing)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, handler in self._replaced.items():
            signal.signal(sig, handler)
        self._replaced = {}
