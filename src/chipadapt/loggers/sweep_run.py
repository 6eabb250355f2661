"""The sweep report (merge.py -m ...) as a W&B run of its own in the sweep's group: the plot as an
image, the jobs as a table and the chosen lambda in the summary. Written only when the sweep's
config has `logger=wandb`; it is not a job, so it gets its own run (job_type `sweep_report`). The sweep
folder keeps that run's id like a run folder does: a rerun of the sweep continues the report's run
instead of adding a second one to the group. Offline, where W&B cannot continue a run (each attempt is a
run of its own: loggers/wandb.py), a rerun of a sweep whose report is what was logged last logs nothing:
a no-op rerun added a second `sweep_report` run to the group; `wandb/sweep_report.logged` holds the hash
of what the last report run logged, written once it finished."""

import hashlib
import json
import logging
from pathlib import Path

from chipadapt.io.atomic import write_text_atomic
from chipadapt.loggers.identity import sweep_group
from chipadapt.loggers.wandb import folder_run_id, runs_offline

log = logging.getLogger(__name__)
LOGGED = "sweep_report.logged"


def log_sweep_report(logger_cfg, sweep_dir: Path, image: Path, rows: list[dict], chosen: dict) -> None:
    node = (logger_cfg or {}).get("wandb")
    if node is None:
        return
    settings = {k: node.get(k) for k in ("project", "entity", "group", "offline")}
    marker = sweep_dir / "wandb" / LOGGED
    logged = hashlib.sha256(json.dumps([settings, rows, chosen], sort_keys=True, default=str).encode()).hexdigest()
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == logged:
        log.info("sweep report: the same as the one W&B has (%s); not logged again", marker)
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
    write_text_atomic(marker, logged + "\n")  # after the run is complete: a crash before it logs again
