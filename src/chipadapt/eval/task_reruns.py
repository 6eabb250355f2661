"""What a rerun of a finished evaluation task with other settings changes, and where its earlier results go.

eval/finished_tasks.py keeps a task finished in an earlier run of the same folder where its key matches. A
rerun that measures it otherwise (`changed_settings`: another setting that changes its figures or which of
them it keeps, other data, no model where a model answered (verilog's references_only), or another model,
by content (`model_changes`), or loading as configured) replaces its results with a warning naming each
change (eval/run.py), and its earlier record and per-item file are kept in `tasks/.stale/<task>-<time>/`
(`kept_already`, `keep_aside`): nothing a run measured is lost to a rerun of other settings. A task record
names the model it was measured on by identity and by content fingerprint, with how it ran (`model_record`):
the same model copied with new file dates, or a job requeued where `auto` picks another attention kernel,
is the same measurement.
"""

import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from chipadapt.eval.same_items import RecordedFile, flat_settings, settings_differ
from chipadapt.io.identity import OUTPUT_KEYS, identity
from chipadapt.manifest import fingerprint_input

# Settings that change how fast answers come, not what they are (up to rounding): a rerun after an
# out-of-memory crash with a smaller batch keeps the answers given before it.
SPEED_KEYS = {"batch_size", "workers"}
# Settings whose change leaves a finished task's figures and per-item records what they were (how fast they
# come, what a task writes beside them): a rerun changing only these is no other measurement. Not all of
# same_items.NOT_MEASURING: answer_without_context decides which figures a run keeps (rougeL, rag_gain).
REPLACES_NOTHING = frozenset(SPEED_KEYS | OUTPUT_KEYS | {"misses_k"})
# The attention as configured (model.attn_implementation), which a record keeps beside the resolved `attn`:
# `auto` takes the kernel each machine has, so a job requeued from a GPU node onto a CPU node measures what
# it measured (the task runs again under its key, which holds the resolved kernel).
CONFIGURED_ATTN = "attn_implementation"
# tasks/.stale/<task>-<time>/: a finished task's record and per-item file that results of other settings
# replaced (a hidden folder: no reader of tasks/*.json or of the run's *_items.jsonl takes them for the run's,
# as reproduce.py's steps of other settings go to .stale/).
STALE_FOLDER = ".stale"


def changed_settings(record: dict | None, measured: dict) -> list[str]:
    """How a task's finished `record` was measured otherwise than `measured` (`measured_with`'s record of
    this run), one "key before -> now" each: the settings that change its figures or which of them it
    keeps (not its speed, REPLACES_NOTHING), the data files by content, whether a model answered at all
    (verilog's references_only), and which model (`model_changes`: its files by content, its dtype and
    attention as configured) where both name one. [] where there is no finished record or none of these
    changed: other code, the model files' dates (a copy without -p) or the device (the attention `auto`
    resolves on it) reruns the same measurement."""
    if record is None:
        return []
    if not isinstance(record.get("settings"), dict):
        return ["settings (an earlier version recorded none)"]
    changed = [
        f"{key} {before!r} -> {now!r}"
        for key, before, now in settings_differ(
            recorded_settings(record), recorded_settings(measured), REPLACES_NOTHING
        )
    ]
    before, now = record.get("model"), measured.get("model")
    if (before is None) != (now is None):
        said = {True: "none", False: "the evaluated model"}
        changed.append(f"model {said[before is None]} -> {said[now is None]}")
    elif before is not None:
        # Another model, the model's files rewritten in place (a retrained folder), or loaded otherwise.
        changed += [f"{what} {was!r} -> {is_now!r}" for what, was, is_now in model_changes(record, measured)]
    return changed


def recorded_settings(record: dict) -> dict[str, object]:
    """A task record's (or `measured_with`'s) settings as {dotted key: value}, each data file it recorded
    reading (`inputs`: the manifest's record of it) by content (same_items.RecordedFile)."""
    flat = flat_settings(record.get("settings") or {})
    for key, found in (record.get("inputs") or {}).items():
        if key in flat and isinstance(found, dict) and found.get("fingerprint"):
            flat[key] = RecordedFile(found["fingerprint"], str(found.get("path") or flat[key]))
    return flat


def model_record(model: Path, running: dict, attn_implementation: str | None) -> dict[str, object]:
    """How a task record names the model it was measured on (`measured_with`): its files by identity
    (`model`: size and modification time, as the task's key takes them) and by content
    (`model_fingerprint`, the manifest's: memoised, so the manifest's record of the model hashes it once),
    and how it ran (`running`: as resolved, with the attention as configured where `attn_implementation` is
    given)."""
    configured = {CONFIGURED_ATTN: attn_implementation} if attn_implementation is not None else {}
    return {
        "model": identity(Path(model)),
        "model_fingerprint": fingerprint_input(model)["fingerprint"],
        "running": {**running, **configured},
    }


def model_changes(record: dict, now: dict) -> list[tuple[str, object, object]]:
    """(what, before, now) for each way the model a task record (`measured_with`'s) was measured on differs
    from `now`'s (a `model_record`), both naming one: its files by content where both record a fingerprint
    (a copy that gave them new dates is the same model; a record of an earlier version has only their sizes
    and dates), its dtype, and its attention as configured where both record it (`auto`: the kernel a
    machine has, not another measurement), else as resolved; not the device (a requeue's). A record
    without `running` (an earlier version) is compared by its files only."""
    if record.get("model_fingerprint") and now.get("model_fingerprint"):
        files = ("model files (content fingerprint)", "model_fingerprint")
    else:
        files = ("model files (by size and modification time)", "model")
    changes = []
    if record.get(files[1]) != now.get(files[1]):
        changes.append((files[0], str(record.get(files[1]))[:12], str(now.get(files[1]))[:12]))
    before, running = record.get("running"), now.get("running") or {}
    if not isinstance(before, dict):
        return changes
    attn = (
        ("model.attn_implementation", CONFIGURED_ATTN)
        if before.get(CONFIGURED_ATTN) and running.get(CONFIGURED_ATTN)
        else ("model attention (as resolved)", "attn")
    )
    for what, key in (("model.dtype", "dtype"), attn):
        if before.get(key) != running.get(key):
            changes.append((what, before.get(key), running.get(key)))
    return changes


def kept_already(stale: Path, name: str, record: Path) -> Path | None:
    """The folder under `stale` that already holds task `name`'s `record` as it is (set aside by a rerun
    killed between writing its items and its record); None where none does."""
    for earlier in sorted(stale.glob(f"{name}-*/{name}.json")) if stale.is_dir() else []:
        if earlier.read_bytes() == record.read_bytes():
            return earlier.parent
    return None


def keep_aside(stale: Path, name: str, files: list[Path]) -> Path:
    """`files` (task `name`'s record, and its per-item file), linked (else copied) into
    `<stale>/<task>-<time>/`, which appears whole; the files themselves stay until the new ones replace them."""
    stale.mkdir(parents=True, exist_ok=True)
    stamp = f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    target, n = stale / stamp, 1
    while target.exists():  # two replacements within a second
        target, n = stale / f"{stamp}-{n}", n + 1
    partial = Path(tempfile.mkdtemp(prefix=f".{stamp}.", dir=stale))
    for path in files:
        try:
            os.link(path, partial / path.name)  # the new file is renamed over the old: the link keeps it
        except OSError:  # a filesystem without hard links
            shutil.copy2(path, partial / path.name)
    partial.rename(target)
    return target
