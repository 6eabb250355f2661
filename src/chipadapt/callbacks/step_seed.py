"""Random draws inside training (dropout masks) seeded by the step, so a resumed run draws exactly
what the run that was never interrupted drew. Restoring the generators from a checkpoint is not
enough: between a checkpoint and the next step, validation and new data-loader iterators draw from
the global generator a different number of times in a resumed run than in an uninterrupted one."""

import lightning as L
import torch


class StepSeed(L.Callback):
    def __init__(self, seed: int):
        self.seed = seed
        self._step, self._micro = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Checkpoints fall on step boundaries, so a resumed run starts at micro-batch 0 of a step.
        self._micro = self._micro + 1 if trainer.global_step == self._step else 0
        self._step = trainer.global_step
        torch.manual_seed((self.seed * 1_000_003 + trainer.global_step * 1_009 + self._micro) % (2**63 - 1))
