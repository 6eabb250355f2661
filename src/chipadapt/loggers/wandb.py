"""Lightning's WandbLogger with the run named, grouped, typed and tagged after the Hydra job.

Settings left null in conf/logger/wandb.yaml (name, group, job_type) come from the job (see
`identity.job_identity`); a value set there wins. Ending the run is the job's business
(`finish_wandb_run`, called however the job ends), because Lightning's `finalize` does not end it
and the next job of a multirun in the same process would otherwise log into this run."""

import sys
from collections.abc import Iterable

from lightning.pytorch.loggers import WandbLogger

from chipadapt.loggers.identity import job_identity


class JobWandbLogger(WandbLogger):
    def __init__(
        self,
        *,
        name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        tags: Iterable[str | None] = (),
        **kwargs,
    ):
        job = job_identity()
        # Tags come from config interpolations that may be missing for an entry point (merge has no stage).
        clean_tags = sorted({str(tag)[:64] for tag in tags or () if tag})
        super().__init__(
            name=name or job.name,
            group=group or job.group,
            job_type=job_type or job.job_type,
            tags=clean_tags or None,
            **kwargs,
        )


def finish_wandb_run(succeeded: bool) -> None:
    """End this process's W&B run, if one was started (wandb imported and a run live)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=0 if succeeded else 1)
