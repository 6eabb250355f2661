"""A callback that kills its own process without warning at a given step (tests of resume only)."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    def __init__(self, step: int, sig: str = "SIGKILL"):
        self.step, self.sig, self.sent = step, getattr(signal, sig), False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Once: a second SIGINT would be a second Ctrl-C (stop now, without the checkpoint).
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.sig)
