"""Files a command builds in its run folder and reuses on a rerun there (the retriever stage's passages
and synthetic training data). Beside each lies `<name>.built_from.json`: what it was built from (its
settings and the content fingerprints of its inputs) and the hash of what was written. A rerun reuses
the file only when both still hold, and builds it again otherwise: a reused file built under other
settings would be trained and evaluated on while the run's records name the new ones.

The record is written before the file, so a build cut off between the two leaves a record whose hash
does not match (built again), never a file without one. A file without a record was not written here
by this code (an earlier chipadapt, the user): it is neither reused nor replaced, except by the resume of
a checkpoint that trained on it (a run preempted under an earlier chipadapt), which adopts it as it is."""

import json
import logging
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic, write_text_atomic
from chipadapt.io.dotted_keys import flatten
from chipadapt.io.hashing import sha256_bytes, sha256_file

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".built_from.json"
SHOWN = 4  # differences named in a message


def record_path(target: Path) -> Path:
    return target.with_name(target.name + RECORD_SUFFIX)


def why_rebuild(target: Path, built_from: dict, advice: str) -> str | None:
    """None when `target` holds what `built_from` describes (reuse it), else why it must be built.
    `advice`: how to keep a file found without a record, named in that error."""
    record_file = record_path(target)
    if not record_file.is_file():
        if target.exists():
            raise ChipadaptError(
                f"{target}: no record of what it was built from ({record_file.name}): written by an earlier "
                f"chipadapt or not by this command, so it is neither reused nor replaced; move it away to have "
                f"it built again, or {advice}"
            )
        return "not built yet"
    if not target.is_file():
        return f"{target.name} is missing"
    try:
        record = json.loads(record_file.read_text())
        recorded, digest = record["built_from"], record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{record_file.name} cannot be read"
    changed = differences(recorded, normalised(built_from))
    if changed:
        more = f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else ""
        return "built from other settings or inputs: " + "; ".join(changed[:SHOWN]) + more
    if sha256_file(target) != digest:
        return f"{target.name} is not what was built (changed since, or its build was cut off)"
    return None


def reusable(target: Path, built_from: dict, advice: str, resumed: str | None = None) -> bool:
    """Whether `target` is reused (else the caller builds it). `resumed`: the checkpoint this run resumes,
    which trained on the file as it is: building it again under that training is refused."""
    if resumed and target.is_file() and not record_path(target).is_file():
        # Written by an earlier chipadapt, which kept no record, and trained on by the checkpoint resumed:
        # what the resume must read, recorded now as built from these settings.
        log.warning(
            "%s has no record of what it was built from; %s trained on it: reused, and recorded", target, resumed
        )
        write_json_atomic(record_path(target), {"built_from": normalised(built_from), "sha256": sha256_file(target)})
        return True
    why = why_rebuild(target, built_from, advice)
    if why is None:
        log.info("reusing %s (built from these settings and inputs)", target)
        return True
    if resumed:
        raise ChipadaptError(
            f"{resumed} trained on {target}, which would now be built again ({why}); rerun with the settings and "
            "inputs it was built from to resume, or start over here with resume=false"
        )
    if target.exists():
        log.warning("%s is built again: %s", target, why)
    return False


def write_built(target: Path, text: str, built_from: dict) -> Path:
    """`text` into `target` (atomically), its record first."""
    write_json_atomic(
        record_path(target), {"built_from": normalised(built_from), "sha256": sha256_bytes(text.encode("utf-8"))}
    )
    return write_text_atomic(target, text)


def normalised(tree: dict) -> dict:
    """As read back from JSON (tuples as lists, keys as strings): what a record is compared as."""
    return json.loads(json.dumps(tree, default=str))


def differences(recorded: dict, current: dict) -> list[str]:
    """`key: old -> new` for each dotted key whose value differs (long fingerprints cut short)."""
    old, new = dict(flatten(recorded)), dict(flatten(current))
    return [
        f"{key}: {short(old.get(key))} -> {short(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "...'"
