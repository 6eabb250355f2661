"""SLURM's warning signal as a requeued job meets it (tests of SLURM requeue only): sent once for the
whole job, at a chosen optimizer step, so the requeued job, which reruns the exact same command line
(this callback included), is not warned again."""

import os
import signal
import sys
from pathlib import Path

import lightning as L


class WarnOnceAtStep(L.Callback):
    def __init__(self, step: int, sig: str, sent_file: str):
        # The file outlives the process: SLURM warns the job once, not each run of its command.
        self.step, self.sig, self.sent_file = step, getattr(signal, sig), Path(sent_file)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent_file.exists():
            self.sent_file.write_text(str(trainer.global_step))
            print(f"test: sending {signal.Signals(self.sig).name}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), self.sig)
