"""Record files among curation's inputs: a `.jsonl` file is corpus records, one document per line.

A user who drops JSONL records (`{"text": ...}`, or curation's own output) into a folder means the
records, not the JSON syntax, to be the training text. Every non-blank line must be a JSON object
with a string `text`; a file with any other line is damaged (a truncated copy, a merge conflict, a
hand edit) and read_records says which line and why, for the caller to skip the file and say so.
"""

import json
import re
from dataclasses import dataclass

RECORD_SUFFIX = ".jsonl"
TEXT_KEY = "text"


def is_record_file(path: str) -> bool:
    return path.lower().endswith(RECORD_SUFFIX)


def looks_like_records(content: str) -> bool:
    """Whether the file's first non-blank line is a record. A repository holds JSONL of other kinds
    too (simulation logs, tool telemetry): those are skipped and counted, not fatal and not trained
    on as JSON text. A file that starts as records and breaks later is damaged: read_records says where."""
    first = next((line for line in content.split("\n") if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and isinstance(record.get(TEXT_KEY), str)


@dataclass(frozen=True)
class Record:
    line: int
    text: str
    path: str  # the record's own `path` (or `id`), for language detection; "" when it has none
    lang: str  # the record's own `lang` (curation's output has one); "" when it has none


_LANG = re.compile(r"[\w+.#-]{1,40}", re.ASCII)


def _optional_string(record: dict, *keys: str) -> str:
    for key in keys:
        if isinstance(record.get(key), str) and record[key]:
            return record[key]
    return ""


def _language(record: dict) -> str:
    # Written to the output as it is: only a plain name is kept (a lone surrogate could not be written).
    lang = _optional_string(record, "lang")
    return lang if _LANG.fullmatch(lang) else ""


class MalformedRecord(ValueError):
    """A line of a records file that is not a record: its number and what is wrong with it."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"{line}: {reason}")
        self.line = line
        self.reason = reason


def read_records(content: str) -> list[Record]:
    """The records of a decoded .jsonl file, all of them or MalformedRecord for its first bad line."""
    records = []
    # Split on \n only: str.splitlines would also split on U+2028 and friends, which JSON allows unescaped.
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MalformedRecord(number, f"not JSON ({err.msg}, column {err.colno})") from None
        if not isinstance(record, dict):
            kind = {list: "list", str: "string"}.get(type(record), type(record).__name__)
            raise MalformedRecord(number, f"a JSON {kind}, not an object with a string {TEXT_KEY!r}")
        text = record.get(TEXT_KEY)
        if not isinstance(text, str):
            keys = ", ".join(sorted(record)[:8]) or "none"
            raise MalformedRecord(number, f'no string "{TEXT_KEY}" (keys: {keys})')
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedRecord(
                number, f"a lone UTF-16 surrogate escape in {TEXT_KEY!r} (valid JSON, but no character)"
            ) from None
        records.append(Record(number, text, _optional_string(record, "path", "id"), _language(record)))
    return records
