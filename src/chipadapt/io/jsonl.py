"""JSON Lines input: every reader of a user's JSONL goes through here, so a bad line is always
reported the same way, naming the file and the line."""

import json
from collections.abc import Iterator
from pathlib import Path

from chipadapt.errors import ChipadaptError


def jsonl_records(path: str | Path, missing: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line. `missing`: the message for a file that is not
    there (by default the open fails as usual)."""
    path = Path(path)
    if missing is not None and not path.is_file():
        raise ChipadaptError(missing)
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ChipadaptError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ChipadaptError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record
