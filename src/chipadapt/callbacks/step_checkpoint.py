"""Lightning's ModelCheckpoint, with the last save of a run that stops at `trainer.max_steps` made at
that step's boundary.

Lightning otherwise writes that last `last.ckpt` at the end of the epoch the run stopped in, with the
epoch marked complete: a rerun with a larger `max_steps` (training a finished run longer) then starts
after that epoch, or, with `max_epochs=1` as here, trains nothing and exits as if it had. Saved at the
step boundary, the checkpoint is the one an interrupt would write, and the rerun continues mid-epoch
with the next batch of the same data order."""

from lightning.pytorch.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # After the micro-batch that completed the last optimizer step; the epoch-end save that would
        # follow is skipped, as one at the same global step is already written.
        if 0 < trainer.max_steps <= trainer.global_step and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
