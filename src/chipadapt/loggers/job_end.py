"""The end of a job for its loggers, however it ends (job.recorded_job, JobLoggers.close): TensorBoard
logs its `hp_metric` only then, when the job succeeded (Lightning's `finalize("success")` comes after
every validate and fit, also of a job killed later), and the W&B run is ended with the job's status."""

import sys


def finish_job_loggers(succeeded: bool) -> None:
    tensorboard = sys.modules.get("chipadapt.loggers.tensorboard")  # not imported: no TensorBoard logger
    if tensorboard is not None:
        tensorboard.end_of_job(succeeded)
    if "wandb" in sys.modules:  # no W&B run without it; loggers.wandb imports Lightning (seconds of a refusal)
        from chipadapt.loggers.wandb import finish_wandb_run

        finish_wandb_run(succeeded)
