"""`steps.json` in the reproduction folder: per step, the command it ran, the code versions it ran with,
how it ended, how long it took.

A step is done when its recorded command is the one configured now, it completed, and it ran with the
code versions of now (code_versions.py: the GGUF conversion and the tokenizer selection) that apply to
it (code_scope.py: a new selection does not rerun a base-tokenizer step). Those are not in every
command: the tokenizer and evaluation steps name the model by its package, not by the converted
folder, so without the stamp a step from before a conversion change would be skipped while the merges
that name the new folder ran again, and one report would mix both. Every step is stamped with every
version, so a record stays valid when a step's scope changes. A record without a stamp is from before
it was kept, and is not done either. The ledger is
rewritten atomically after every change, so a crash leaves the record of every finished step. A step
that was interrupted or failed resumes when the same command runs again, so its `seconds` add up
every segment's time (`segments` counts them); a step killed without a record of its time (SIGKILL)
adds nothing for that segment."""

import dataclasses
import datetime as dt
import json
from pathlib import Path

from chipadapt.code_versions import code_versions
from chipadapt.io.atomic import write_json_atomic
from chipadapt.reproduce.code_scope import applies

# The `tokenizer.ggml.pre` of the GGUF this reproduction's model is converted from (run.py sets it once the
# model is resolved): its conversion version is the stamp's (code_versions.py), so a command-r model's steps
# converted by version 2 run again while a SmolLM2 one's stay done. One model per reproduce.py process.
_model_pre_tokenizer: str | None = None


def use_model_pre_tokenizer(name: str | None) -> None:
    global _model_pre_tokenizer
    _model_pre_tokenizer = name


def stamp() -> dict[str, int]:
    """The code versions a step runs with now (code_versions.py), for this reproduction's model."""
    return code_versions(_model_pre_tokenizer)


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def done(self, name: str, command: list[str], scope: frozenset[str] | None = None) -> bool:
        record = self.records.get(name)
        return (
            bool(record)
            and record.get("status") == "completed"
            and record.get("command") == command
            and not self.other_code(name, scope)
        )

    def other_code(self, name: str, scope: frozenset[str] | None = None) -> str | None:
        """How the code versions `name` was recorded with differ from now ("conversion v1") in the code
        of `scope` (Step.code_scope; None: every version), or "no code versions" for a record from
        before they were kept; None when they are the same or the step has no record."""
        record = self.records.get(name)
        if not record:
            return None
        recorded = record.get("code_versions")
        if recorded is None:
            return "no code versions"
        changed = [
            f"{what} v{recorded.get(what)}"
            for what, v in stamp().items()
            if recorded.get(what) != v and applies(what, scope)
        ]
        return ", ".join(changed) or None

    def recorded_command(self, name: str) -> list[str] | None:
        record = self.records.get(name)
        return record.get("command") if record else None

    def start(self, name: str, command: list[str], log: Path, choice=None, scope: frozenset[str] | None = None) -> None:
        earlier = self.records.get(name)
        resumes = (
            bool(earlier)
            and earlier.get("command") == command
            and earlier.get("status") != "completed"
            and not self.other_code(name, scope)
        )
        self.records[name] = {
            "command": command,
            "code_versions": stamp(),
            **({"choice": dataclasses.asdict(choice)} if choice else {}),
            "status": "running",
            "log": str(log),
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "seconds": None,
            "earlier_seconds": self._time_so_far(earlier) if resumes else 0.0,
            "segments": (earlier.get("segments", 1) + 1) if resumes else 1,
        }
        self.save()

    @staticmethod
    def _time_so_far(record: dict) -> float:
        """A record's time over all its segments: `seconds` once a segment ended with a record, else
        (killed while running) what the segments before it took."""
        seconds = record.get("seconds")
        return seconds if seconds is not None else record.get("earlier_seconds", 0.0)

    def finish(self, name: str, status: str, seconds: float, returncode: int) -> None:
        record = self.records[name]
        record.update(
            status=status,
            seconds=round(record.get("earlier_seconds", 0.0) + seconds, 1),
            returncode=returncode,
            finished=dt.datetime.now().isoformat(timespec="seconds"),
        )
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.records)


def now_versions() -> str:
    """The code versions of now, as a dry run's line names them: "conversion v2, selection v3"."""
    return ", ".join(f"{what} v{v}" for what, v in stamp().items())
