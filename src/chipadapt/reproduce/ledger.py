"""`steps.json` in the reproduction folder: per step, the command it ran, how it ended, how long it took.

A step is done when its recorded command is the one configured now and it completed; the ledger is
rewritten atomically after every change, so a crash leaves the record of every finished step."""

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
        self.records[name] = {
            "command": command,
            **({"choice": dataclasses.asdict(choice)} if choice else {}),
            "status": "running",
            "log": str(log),
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "seconds": None,
        }
        self.save()

    def finish(self, name: str, status: str, seconds: float, returncode: int) -> None:
        self.records[name].update(
            status=status,
            seconds=round(seconds, 1),
            returncode=returncode,
            finished=dt.datetime.now().isoformat(timespec="seconds"),
        )
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.records)
