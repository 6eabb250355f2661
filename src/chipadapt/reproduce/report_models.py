"""The models the report opens itself (the augmented tokenizer, to count held-out text with it): a run
restored on another machine (restore.py) has their records, not their files, so they are rebuilt and
checked against their fingerprints before the report, by the runner's rebuild."""

import logging
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.reproduce.ledger import Ledger
from chipadapt.reproduce.rebuild import packed, rebuild_step
from chipadapt.reproduce.runner import Terminated, step_progress, stop_on_sigterm
from chipadapt.reproduce.steps import Step

log = logging.getLogger(__name__)


def report_rebuilds(steps: list[Step], out: Path) -> list[Step]:
    """Done steps whose model files the report opens, restored here without them."""
    ledger = Ledger(out / "steps.json")
    return [
        s
        for s in steps
        if s.report_reads_model and (ledger.records.get(s.name) or {}).get("status") == "completed" and packed(s, out)
    ]


def rebuild_for_report(steps: list[Step], out: Path) -> None:
    """Rebuild, and check against its fingerprint, each model the report reads that a restored run lacks."""
    todo = report_rebuilds(steps, out)
    if not todo:
        return
    stop_on_sigterm()
    ledger = Ledger(out / "steps.json")
    with step_progress() as progress:
        for step in todo:
            task = progress.add_task("", total=None, step=f"{step.name} (model, for the report)")
            rebuild_step(step, steps, out, ledger, progress, task)
            progress.update(task, description="model rebuilt", total=1, completed=1)


def report_models(steps, out: Path) -> None:
    """Rebuild the restored models the report opens; one that cannot be rebuilt leaves its section saying
    so (the report is still built from the records)."""
    try:
        rebuild_for_report(steps, out)
    except Terminated:
        raise  # a scheduler's kill stops the whole invocation
    except ChipadaptError as err:
        log.warning("%s; the report is built without that model's files", err)
