"""Training progress people can see wherever the output goes: the rich progress bar in a terminal;
in a SLURM log or behind `| tee`, where a bar is silent or a mess of carriage returns, one plain
line every `every_n_steps` optimizer steps (step, loss, tokens/s, elapsed, ETA) and one per validation."""

import logging
import sys
import time

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger("chipadapt.progress")


def progress_bar(every_n_steps: int, terminal: bool | None = None) -> ProgressBar:
    """RichProgressBar when stdout is a terminal, else `LineProgress`; `terminal` forces the choice."""
    if terminal is None:
        terminal = sys.stdout.isatty()
    return RichProgressBar() if terminal else LineProgress(every_n_steps)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LineProgress(ProgressBar):
    def __init__(self, every_n_steps: int):
        super().__init__()
        self.every_n_steps = max(1, int(every_n_steps))
        self._enabled = True
        self._start = time.monotonic()
        self._first_step = 0
        self._last_step = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._first_step, self._last_step = time.monotonic(), trainer.global_step, trainer.global_step

    @staticmethod
    def total_steps(trainer) -> int | None:
        if trainer.max_steps and trainer.max_steps > 0:
            return min(trainer.max_steps, int(trainer.estimated_stepping_batches))
        total = trainer.estimated_stepping_batches
        return int(total) if total != float("inf") else None

    def line(self, trainer) -> str:
        step, total = trainer.global_step, self.total_steps(trainer)
        elapsed = time.monotonic() - self._start
        done = step - self._first_step
        parts = [f"step {step}/{total}" if total else f"step {step}"]
        metrics = trainer.callback_metrics
        if "train/loss" in metrics:
            parts.append(f"loss {float(metrics['train/loss']):.4f}")
        if "train/tokens_per_s" in metrics:
            parts.append(f"tokens/s {float(metrics['train/tokens_per_s']):.0f}")
        parts.append(f"elapsed {_clock(elapsed)}")
        if total and done > 0:
            parts.append(f"eta {_clock(elapsed / done * max(0, total - step))}")
        return " | ".join(parts)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self._enabled or step == self._last_step or not trainer.is_global_zero:
            return
        self._last_step = step
        total = self.total_steps(trainer)
        if step % self.every_n_steps == 0 or step == total:
            log.info("%s", self.line(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.sanity_checking or not trainer.is_global_zero:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
        if values:
            log.info(
                "validation at step %d: %s",
                trainer.global_step,
                " ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())),
            )
