"""JSON Lines input: every reader of a user's JSONL goes through here, so a bad line is always
reported the same way, naming the file and the line."""

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path

from chipadapt.errors import ChipadaptError

# A record larger than this is refused by default: parsing and tokenizing one line costs a couple
# of hundred times its size in memory, so a 100 MB line would need about 20 GB.
DEFAULT_MAX_LINE_BYTES = 16 << 20
# An escape of a UTF-16 surrogate (\ud800-\udfff). JSON allows one alone, but it is no character:
# a string holding it cannot be encoded, and tokenizers fail on it without naming the record. Valid
# pairs also match; the check behind it (lone_surrogate) tells them apart.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# What the first bytes of a file that is not JSON Lines text say it is.
GZIP_MAGIC = b"\x1f\x8b"
TABLE_SUFFIXES = (".csv", ".tsv")


def jsonl_records(
    path: str | Path,
    missing: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    limit_key: str | None = None,
) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line. `missing`: the message for a file that is not
    there (by default the open fails as usual). A line over `max_line_bytes` is an error naming
    `limit_key` (the config key that raises the limit) and is never read whole.
    A Hugging Face dataset (`hf:ID[:SPLIT]`, a .parquet/.arrow file, a save_to_disk folder) is read
    with `datasets` instead, its rows numbered from 1 like lines."""
    from chipadapt.io.hf_dataset import dataset_path_records, is_dataset_path

    if is_dataset_path(path):
        yield from dataset_path_records(path)
        return
    path = Path(path)
    if missing is not None and not path.is_file():
        raise ChipadaptError(missing)
    with open(path, "rb") as handle:
        lineno = 0
        while raw := handle.readline(max_line_bytes + 1):
            lineno += 1
            if lineno == 1:
                if raw.startswith(GZIP_MAGIC):
                    raise ChipadaptError(
                        f"{path}: gzip-compressed; decompress it first (gunzip -k {path}) and give the "
                        "uncompressed file"
                    )
                # A byte-order mark, as some Windows editors write: read as utf-8-sig, like most tools.
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if len(raw) > max_line_bytes:
                raise ChipadaptError(
                    f"{path}:{lineno}: line longer than {max_line_bytes:,} bytes; split the record"
                    + (f" or raise {limit_key}" if limit_key else "")
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ChipadaptError(f"{path}:{lineno}: not UTF-8 text (byte {err.start} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                hint = ""
                if path.suffix.lower() in TABLE_SUFFIXES:  # `datasets` reads a CSV whole, a column per field
                    hint = (
                        f"; {path.name} looks like CSV, not JSON Lines: give it as hf:{path} to read it as a table "
                        "(text and number columns; a list field needs JSON Lines or parquet)"
                    )
                raise ChipadaptError(
                    f"{path}:{lineno}: malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno}){hint}"
                ) from None
            if not isinstance(record, dict):
                raise ChipadaptError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            if SURROGATE_ESCAPE.search(raw) and (bad := lone_surrogate(record)) is not None:
                raise ChipadaptError(
                    f"{path}:{lineno}: the escape \\u{bad:04x} is half of a UTF-16 surrogate pair, not a character; "
                    "fix or drop the record"
                )
            yield lineno, record


class FirstLines:
    """The line of a file where each id was first used. Evaluation items are matched across runs by
    id (eval/paired.py), so a second record with the same id would silently replace the first there:
    it is refused, naming both lines."""

    def __init__(self, path: str | Path, field: str = "id"):
        self.path, self.field, self.lines = path, field, {}

    def check(self, value, lineno: int) -> str:
        """`value` as the item's id (text: 7 and "7" are the same id), refused if an earlier line used it."""
        value = str(value)
        if value in self.lines:
            raise ChipadaptError(
                f"{self.path}:{lineno}: {self.field} {value!r} repeats line {self.lines[value]}; "
                f"give each record its own {self.field} (items are matched across runs by it)"
            )
        self.lines[value] = lineno
        return value


def unique_field(records: Iterator[tuple[int, dict]], path: str | Path, field: str = "id"):
    """`records` (from jsonl_records) as they come, refusing a second record with the same `field`
    (records without it are let through: their reader names them some other way)."""
    first = FirstLines(path, field)
    for lineno, record in records:
        if record.get(field) is not None:
            first.check(record[field], lineno)
        yield lineno, record


def lone_surrogate(record: dict) -> int | None:
    """The code point of the first lone surrogate in `record`'s strings, None when there is none."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        return ord(err.object[err.start])
    return None


def json_object(path: str | Path, key: str | None = None) -> dict:
    """One JSON file that must hold an object (a model's config.json, a run's manifest.json);
    `key`: the config key that named it, put in front of the message."""
    where = f"{key}: {path}" if key else str(path)
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ChipadaptError(f"{where}: not valid JSON ({err.msg}, line {err.lineno})") from None
    except UnicodeDecodeError as err:
        raise ChipadaptError(f"{where}: not UTF-8 text (byte {err.start})") from None
    if not isinstance(record, dict):
        raise ChipadaptError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record
