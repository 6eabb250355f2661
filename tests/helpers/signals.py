"""Callbacks that send their own process a signal at a chosen moment of a training job (tests of
interruption and SLURM requeue only): before training, twice within one step, during the final
validation."""

import os
import signal
import sys

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn


def _send(sig: int, times: int = 1) -> None:
    print(f"test: sending {signal.Signals(sig).name} x{times}", file=sys.stderr, flush=True)
    for _ in range(times):
        os.kill(os.getpid(), sig)


class SignalWhenBuilt(L.Callback):
    """The signal arrives when the trainer is built: after data preparation, before training starts."""

    def __init__(self, sig: str):
        _send(getattr(signal, sig))


class SignalTwiceAtStep(L.Callback):
    """Two signals in a row once `step` optimizer steps are done (a user pressing Ctrl-C twice)."""

    def __init__(self, step: int, sig: str):
        self.step, self.sig, self.sent = step, getattr(signal, sig), False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            _send(self.sig, times=2)


class SignalAtFinalValidation(L.Callback):
    """The signal arrives during the validation after training (before the model folder is saved)."""

    def __init__(self, sig: str):
        self.sig = getattr(signal, sig)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and trainer.global_step > 0:
            _send(self.sig)
