"""The record beside `model/` of what it was published from (the last checkpoint's step and recorded settings),
written after each publish: overwrite=true (resume_decision) reads it to tell a finished checkpoint whose
publish a preemption cut off from the rerun of a published run."""

import json
from pathlib import Path

import lightning as L

from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.hashing import sha256_json
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, RecordSettings

PUBLISHED_RECORD = ".published_from.json"


def published_record(step: int, settings: object) -> dict:
    return {"step": step, "settings": sha256_json(settings)}


def published_from(ckpt: Path, content: dict, recorded_only: bool = False) -> bool:
    """Whether the run folder's `model/` was published from the training `ckpt` holds: its record says so
    (written after each publish); for a folder published before the record was kept, `model/` written after
    the checkpoint (a run saves its last checkpoint, then publishes)."""
    out = ckpt.parent.parent
    try:
        record = json.loads((out / PUBLISHED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict):
        return record == published_record(content.get("global_step"), content.get(CHECKPOINT_KEY))
    if recorded_only:  # only the record tells that this very checkpoint was published
        return False
    published = out / "model" / "config.json"
    return not published.is_file() or published.stat().st_mtime_ns >= ckpt.stat().st_mtime_ns


def record_published(out: Path, trainer: L.Trainer) -> None:
    """After `model/` is published: the step and settings it was trained to, as its last checkpoint records
    them (RecordSettings). A kill before this line leaves the previous record: the checkpoint then reads as
    not published, and a rerun resumes it and publishes the same weights again, which costs nothing."""
    record = next((c for c in trainer.callbacks if isinstance(c, RecordSettings)), None)
    if record is not None and trainer.is_global_zero:
        write_json_atomic(out / PUBLISHED_RECORD, published_record(int(trainer.global_step), record.settings))
