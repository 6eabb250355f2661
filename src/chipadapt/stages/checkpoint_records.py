"""What a checkpoint records beside Lightning's state, and what is put right as a run resumes from it.

RecordSettings writes into every checkpoint the run's trajectory settings (which resume_settings.py
compares on resume), its accumulation and number of processes, whether its training was done, its last
training loss and the hash of its training order; as a run resumes it converts Lightning's count of
micro-batches to the new accumulation and says a change of training order."""

import logging

import lightning as L
import torch

log = logging.getLogger(__name__)

# The run's trajectory settings (resume_settings.trajectory_settings).
CHECKPOINT_KEY = "chipadapt_settings"
# Micro-batches per optimizer step (per process) of the run that wrote a checkpoint.
ACCUMULATION_KEY = "chipadapt_accumulation"
BATCH_PROGRESS = "epoch_loop.batch_progress"
# How many processes (the world size) wrote the checkpoint: a resume on another number is warned of.
PROCESSES_KEY = "chipadapt_processes"
# Whether the checkpoint was written with the run's training done (its last step at its length), and
# the last training loss logged before it.
FINISHED_KEY = "chipadapt_training_done"
LAST_LOSS_KEY = "chipadapt_last_train_loss"
LOSS = "train/loss"  # what every module logs at each optimizer step
# The hash of the training order the checkpoint was written on (the datamodule's stats["training_order"]),
# and the order changes of earlier resumes, carried on so every later manifest lists them.
ORDER_KEY = "chipadapt_training_order"
ORDER_CHANGES_KEY = "chipadapt_training_order_changes"


class RecordSettings(L.Callback):
    """Writes the run's trajectory settings into every checkpoint it saves, its accumulation, whether its
    training was done and its last training loss; a run resumed with another accumulation (another
    micro-batch size or number of processes) has Lightning's count of micro-batches converted to it
    first. A fit resumed from a checkpoint of a training already done trains no step: Lightning then
    leaves its logging step one behind (it adds the one as its epoch loop restarts, which it does not)
    and has no loss; both are put right at the fit's end, so the final validation and the manifest read
    what the run that wrote the checkpoint ended with."""

    def __init__(self, settings: dict[str, object]):
        self.settings = settings
        self.last_loss: float | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.settings
        checkpoint[ACCUMULATION_KEY] = trainer.accumulate_grad_batches
        checkpoint[PROCESSES_KEY] = trainer.world_size
        checkpoint[FINISHED_KEY] = training_done(trainer)
        loss = trainer.callback_metrics.get(LOSS)
        checkpoint[LAST_LOSS_KEY] = float(loss) if loss is not None else self.last_loss
        order = training_order(trainer)
        if order is not None:
            checkpoint[ORDER_KEY] = order["hash"]
            checkpoint[ORDER_CHANGES_KEY] = order.get("changes_on_resume", [])

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Called before Lightning restores its loops from `checkpoint` (Lightning 2.6).
        recount_micro_batches(checkpoint, trainer.accumulate_grad_batches)
        self.last_loss = checkpoint.get(LAST_LOSS_KEY)
        check_training_order(checkpoint, training_order(trainer), tell=trainer.is_global_zero)

    def on_fit_end(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        if not loop.restarting:  # the loop ran (a fresh fit, or a resume with steps left): all is right
            return
        # Restored and skipped (Fit's `skip`: nothing left to train). Every module here steps its one
        # optimizer once per logged step, so the step a fresh run would log its end at is global_step.
        loop.epoch_loop._batches_that_stepped = max(loop.epoch_loop._batches_that_stepped, trainer.global_step)
        if LOSS not in trainer.callback_metrics and self.last_loss is not None:
            trainer.callback_metrics[LOSS] = torch.tensor(self.last_loss)


def training_order(trainer) -> dict | None:
    """The datamodule's record of its training order ({"hash": ...}); None for one without (the retriever's).
    The manifest's `data` section holds this same dict (manifest.update("data", stats) keeps its values), so
    a change added to it here is in the manifest the next time it is written."""
    stats = getattr(getattr(trainer, "datamodule", None), "stats", None)
    order = stats.get("training_order") if isinstance(stats, dict) else None
    return order if isinstance(order, dict) and isinstance(order.get("hash"), str) else None


def check_training_order(checkpoint: dict, order: dict | None, tell: bool = True) -> None:
    """A resume whose data gives another training order than the checkpoint's trains, from its step on, on
    another stream than an uninterrupted run would: said in one line, and recorded in the manifest
    (`data.training_order.changes_on_resume`, with those of earlier resumes). The settings compared before
    (check_resume_settings) do not catch it: the data's content and settings may be the same while this
    version builds the order otherwise. A checkpoint written before the order was recorded: nothing said."""
    if order is None:
        return
    changes = [c for c in checkpoint.get(ORDER_CHANGES_KEY) or [] if isinstance(c, dict)]
    before = checkpoint.get(ORDER_KEY)
    if isinstance(before, str) and before != order["hash"]:
        step = checkpoint.get("global_step")
        changes.append({"step": step, "before": before, "after": order["hash"]})
        if tell:
            log.warning(
                "resuming at step %s on another training order than the checkpoint's (order %s, now %s): the data "
                "order changed (copies of held-out texts now left out of training, a fractional weight's "
                "documents drawn otherwise, or the corpus changed), so from this step on the run trains on "
                "another stream than an uninterrupted run would (manifest: data.training_order.changes_on_resume)",
                step,
                before,
                order["hash"],
            )
    if changes:
        order["changes_on_resume"] = changes


def training_done(trainer) -> bool:
    """Whether the fit has reached its length (`max_steps`, else `max_epochs`): what Lightning's
    `fit_loop.done` tells, without its log lines."""
    loop = trainer.fit_loop
    steps, epochs = loop.max_steps, loop.max_epochs
    if steps is not None and steps >= 0 and loop.epoch_loop.global_step >= steps:
        return True
    return epochs is not None and epochs >= 0 and loop.epoch_progress.current.processed >= epochs


def recount_micro_batches(checkpoint: dict, accumulation: int) -> None:
    """Lightning's fit loop counts micro-batches (`batch_progress`), and steps the optimizer when that
    count is a multiple of the accumulation and ends the epoch when it reaches the loader's length. At
    another accumulation the restored count is in the wrong unit: the first step after the resume took
    part of a global batch and the epoch ended early or late. The count of whole steps is kept and
    expressed in the new micro-batches; checkpoints fall on step boundaries."""
    progress = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get(BATCH_PROGRESS)
    if not isinstance(progress, dict):
        return
    before = checkpoint.get(ACCUMULATION_KEY)
    total_ready = (progress.get("total") or {}).get("ready")
    step = checkpoint.get("global_step")
    if before is None and isinstance(total_ready, int) and isinstance(step, int) and step and total_ready % step == 0:
        before = total_ready // step  # a checkpoint written before the accumulation was recorded
    if not isinstance(before, int) or before < 1 or before == accumulation:
        return
    parts = [progress.get(part) for part in ("total", "current")]
    if not all(isinstance(counts, dict) and isinstance(counts.get("ready"), int) for counts in parts):
        return
    if any(counts["ready"] % before for counts in parts):
        log.warning(
            "the checkpoint was not written at a step boundary of its %d micro-batches a step; Lightning's count "
            "of micro-batches is not converted to %d a step",
            before,
            accumulation,
        )
        return
    for counts in parts:
        ready = counts["ready"]
        converted = ready // before * accumulation
        for key, value in counts.items():
            if isinstance(value, int):  # started, processed, completed: the same distance behind `ready`
                counts[key] = max(0, converted - (ready - value))
