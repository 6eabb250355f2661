"""Stop a training run cleanly on SIGINT/SIGTERM and SLURM's warning signals (USR1/USR2): finish the
optimizer step in flight, write `last.ckpt` (what a rerun in the same folder resumes from), then
raise `Interrupted` (after requeueing the SLURM job, for a warning signal)."""

import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from chipadapt import interrupts


class StopAtStepBoundary(L.Callback):
    def __init__(self):
        self._step, self._stop = None, False

    def on_train_start(self, trainer, pl_module) -> None:
        self._step = trainer.global_step

        # Lightning's own SIGTERM handler makes the loop raise after whichever batch the signal lands
        # in, mid-accumulation too, without a checkpoint. Take SIGTERM back for the fit (Lightning
        # restores the handler it found, ours, at teardown); keep its forwarding to worker processes.
        def on_sigterm(signum, frame) -> None:
            launcher = trainer.strategy.launcher
            if interrupts.received() is None and launcher is not None and hasattr(launcher, "kill"):
                launcher.kill(signum)
            interrupts.handle_signal(signum, frame)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step:  # mid-accumulation: the step is not complete yet
            return
        self._step = trainer.global_step
        stop = interrupts.received() is not None
        if trainer.world_size > 1:  # every rank stops at the same step, or the checkpoint deadlocks
            stop = bool(trainer.strategy.broadcast(stop, src=0))
        if not stop:
            return
        checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
        if checkpoints:
            trainer.save_checkpoint(Path(checkpoints[0].dirpath) / f"{checkpoints[0].CHECKPOINT_NAME_LAST}.ckpt")
        # Stop before the next batch (or validation) rather than here, so the loggers still write
        # this step's row: the resumed run starts after it and would never log it.
        self._stop = True

    def _stop_now(self) -> None:
        if self._stop:
            raise interrupts.stop(interrupts.received() or signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop_now()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop_now()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop_now()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop_now()
        # Trained to the end: a warning signal from now on lets the validation and the save finish.
        interrupts.training_finished()
