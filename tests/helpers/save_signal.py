"""A callback that presses Ctrl-C twice around a checkpoint save (tests of interruption only): the first
SIGINT once `step` optimizer steps are done, the second from inside the save that the first one asks
for, once part of the checkpoint is on disk. Sent from within the file writes rather than after a
delay, so the second signal always lands while torch's zip writer is open, whatever the machine's speed."""

import io
import os
import signal
import sys

import lightning as L
import torch


class _SignalMidway(io.RawIOBase):
    """A file that sends SIGINT to its own process once `after` bytes were written through it."""

    def __init__(self, handle, after: int):
        self.handle, self.after, self.written, self.sent = handle, after, 0, False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.written += len(data)
        if self.written > self.after and not self.sent:
            self.sent = True
            print("test: sending SIGINT during the checkpoint save", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGINT)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


class SignalTwiceAcrossSave(L.Callback):
    def __init__(self, step: int, after_bytes: int = 4096):
        self.step, self.after, self.sent = step, after_bytes, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step < self.step or self.sent:
            return
        self.sent = True
        original = torch.save

        def save_with_second_signal(obj, f, *args, **kwargs):
            torch.save = original  # once: the save this interrupt asked for
            return original(obj, _SignalMidway(f, self.after) if hasattr(f, "write") else f, *args, **kwargs)

        torch.save = save_with_second_signal
        print("test: sending SIGINT", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
