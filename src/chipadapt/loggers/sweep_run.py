"""The sweep report (merge.py -m ...) as a W&B run of its own in the sweep's group: the plot as an
image, the jobs as a table and the chosen lambda in the summary. Written only when the sweep's
config has `logger=wandb`; it is not a job, so it gets its own run (job_type `sweep_report`). The sweep
folder keeps that run's id like a run folder does: a rerun of the sweep continues the report's run
instead of adding a second one to the group."""

from pathlib import Path

from chipadapt.loggers.identity import sweep_group
from chipadapt.loggers.wandb import folder_run_id, runs_offline


def log_sweep_report(logger_cfg, sweep_dir: Path, image: Path, rows: list[dict], chosen: dict) -> None:
    node = (logger_cfg or {}).get("wandb")
    if node is None:
        return
    import wandb

    run = wandb.init(
        project=node.get("project"),
        entity=node.get("entity"),
        dir=str(sweep_dir),
        mode="offline" if node.get("offline") else None,
        group=node.get("group") or sweep_group(sweep_dir),
        job_type="sweep_report",
        name="sweep_report",
        id=folder_run_id(sweep_dir, new=runs_offline(node.get("offline"))),
        resume="allow",
    )
    try:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        run.log(
            {
                "sweep_report/plot": wandb.Image(str(image)),
                "sweep_report/jobs": wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows]),
            }
        )
        run.summary.update({f"chosen/{key}": value for key, value in chosen.items()})
    finally:
        run.finish()
