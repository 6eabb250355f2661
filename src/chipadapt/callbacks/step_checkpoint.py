"""Lightning's ModelCheckpoint, with the last save of a run made where the run stopped.

Lightning (2.6, `save_top_k: 0`) writes `last.ckpt` only every `every_n_train_steps`, and once more
at the end of the epoch a `max_steps` run stopped in, with that epoch marked complete: a rerun with a
larger `max_steps` (training a finished run longer) then starts after the epoch, or, with
`max_epochs=1` as here, trains nothing and exits as if it had; a run that ends with its data keeps
the checkpoint of the last multiple of `every_n_train_steps`. Here the run's last step is saved:
at its boundary when `max_steps` stops it mid-epoch (the checkpoint an interrupt would write, so a
rerun continues with the next batch of the same data order), and when training ends otherwise (the
epoch then complete, so a rerun with more epochs starts the next one)."""

from lightning.pytorch.callbacks import ModelCheckpoint

from chipadapt import interrupts


class StepCheckpoint(ModelCheckpoint):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # After the micro-batch that completed the last optimizer step. Not on the epoch's last batch:
        # a checkpoint there says "epoch not complete" with the data exhausted, and a loader with
        # worker processes would then skip the next epoch; on_train_end saves that case. Not on a
        # signal either: the interrupt callback has written this step already.
        if (
            0 < trainer.max_steps <= trainer.global_step
            and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            and interrupts.received() is None
        ):
            self.save_last_now(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self.save_last_now(trainer)

    def save_last_now(self, trainer) -> None:
        """`last.ckpt` at this global step, unless one was saved at it (which also keeps the later
        epoch-end save from replacing it)."""
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
