"""The learning rate logged once per optimizer step.

Lightning's LearningRateMonitor (2.6) logs at the start of every micro-batch it may log at; under
gradient accumulation that is the same rate at the same step once per micro-batch (four identical
rows a step in metrics.csv at accumulation 4).
"""

from lightning.pytorch.callbacks import LearningRateMonitor


class StepLearningRateMonitor(LearningRateMonitor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._logged_step: int | None = None

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        if step == self._logged_step or not trainer._logger_connector.should_update_logs:
            return
        self._logged_step = step
        super().on_train_batch_start(trainer, *args, **kwargs)
