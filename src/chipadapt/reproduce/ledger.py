"""`steps.json` in the reproduction folder: per step, the command it ran, how it ended, how long it took.

A step is done when its recorded command is the one configured now and it completed; the ledger is
rewritten atomically after every change, so a crash leaves the record of every finished step. A step
that was interrupted or failed resumes when the same command runs again, so its `seconds` add up
every segment's time (`segments` counts them); a step killed without a record of its time (SIGKILL)
adds nothing for that segment."""

import dataclasses
import datetime as dt
import json
from pathlib import Path

from chipadapt.io.atomic import write_json_atomic


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def done(self, name: str, command: list[str]) -> bool:
        record = self.records.get(name)
        return bool(record) and record.get("status") == "completed" and record.get("command") == command

    def recorded_command(self, name: str) -> list[str] | None:
        record = self.records.get(name)
        return record.get("command") if record else None

    def start(self, name: str, command: list[str], log: Path, choice=None) -> None:
        earlier = self.records.get(name)
        resumes = bool(earlier) and earlier.get("command") == command and earlier.get("status") != "completed"
        self.records[name] = {
            "command": command,
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
