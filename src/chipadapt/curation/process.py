"""The per-file work, run in worker processes: read, detect, extract, check, label, redact, sketch."""

import os
from dataclasses import dataclass, field

import numpy as np

from chipadapt.curation.dedup import content_hash, minhash_signature
from chipadapt.curation.extract import BINARY_EXTRACTORS, ExtractError, html_text
from chipadapt.curation.filters import GeneratedRules, generated_reason, redact, redact_path
from chipadapt.curation.languages import BINARY_FORMATS, language_of
from chipadapt.curation.records import MalformedRecord, is_record_file, looks_like_records, read_records
from chipadapt.curation.walk import Unit, archive_members, is_archive
from chipadapt.io.binary_files import looks_binary


@dataclass(frozen=True)
class Settings:
    max_bytes: int
    min_chars: int
    max_lines: int
    redact: bool
    near_dedup: bool
    num_perm: int
    shingle: int
    generated: GeneratedRules
    # Keys the tags of redacted paths (redact_path): curation passes this machine's (redaction_key.py), so
    # reruns write the same paths; never written, so a tag cannot be traced back to the address it replaced.
    path_key: bytes = field(default_factory=lambda: os.urandom(16), repr=False)


@dataclass
class Result:
    """One file, or one record of a .jsonl file (`line` > 0; it follows its file's own Result, whose
    status is "records"), with the document to write when status is "ok"."""

    source: str
    path: str
    bytes: int
    status: str  # "ok", "records" (a .jsonl file read as records), or the reason it was skipped
    lang: str = ""
    text: str = ""
    generated: str | None = None
    redactions: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    signature: np.ndarray | None = None
    line: int = 0
    detail: str = ""  # for a skip its reason does not explain alone: where in the file, and what


def process_file(source: str, path: str, data: bytes | None, size: int, s: Settings) -> list[Result]:
    """One file's Results: itself, then (a .jsonl file) one per record."""
    if is_record_file(path) and (data is None or size > s.max_bytes):
        # Its own reason: a records file this large is a dataset the user meant, not a generated dump.
        return [Result(source, path, size, "jsonl_too_large")]
    if data is not None and is_record_file(path) and not looks_binary(data):
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            return [Result(source, path, size, "encoding_error")]
        if not content.strip():  # no line at all: "empty", not a JSONL of another kind
            return [Result(source, path, size, "empty")]
        if not looks_like_records(content):
            return [Result(source, path, size, "jsonl_without_text")]
        try:
            records = read_records(content)
        except MalformedRecord as bad:
            # Skipped whole, none of its records curated: a file broken at one line (a truncated copy,
            # a merge conflict) may be broken elsewhere in ways that still parse, and a corpus silently
            # missing part of a file is harder to notice than a file named in a warning.
            return [Result(source, path, size, "jsonl_malformed", "jsonl", detail=str(bad))]
        results = [Result(source, path, size, "records", "jsonl")]
        for record in records:
            lang = record.lang or language_of(record.path, record.text[:4096])
            results.append(document(source, f"{path}:{record.line}", 0, record.text, lang, s, record.line))
        return results
    return [process_bytes(source, path, data, size, s)]


def process_bytes(source: str, path: str, data: bytes | None, size: int, s: Settings) -> Result:
    if data is None or size > s.max_bytes:
        return Result(source, path, size, "too_large")
    if is_archive(path):
        return Result(source, path, size, "nested_archive")
    lang = language_of(path, None)
    if lang in BINARY_FORMATS:
        try:
            text = BINARY_EXTRACTORS[lang](data)
        except ExtractError:
            return Result(source, path, size, "extract_error", lang)
    else:
        if looks_binary(data):
            return Result(source, path, size, "binary")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Result(source, path, size, "encoding_error")
        lang = language_of(path, text[:4096])
        if lang == "html":
            text = html_text(text)
    return document(source, path, size, text, lang, s)


def document(source: str, path: str, size: int, text: str, lang: str, s: Settings, line: int = 0) -> Result:
    """The checks, labels, redaction and sketch every document gets, a whole file's or a record's."""
    if len(text.strip()) < s.min_chars:
        return Result(source, path, size, "too_short", lang, line=line)
    if text.count("\n") + 1 > s.max_lines:
        return Result(source, path, size, "too_many_lines", lang, line=line)
    redactions = {}
    if s.redact:
        text, redactions = redact(text)
    result = Result(source, path, size, "ok", lang, text, generated_reason(text, lang, s.generated), redactions)
    result.line = line
    result.digest = content_hash(text)
    if s.near_dedup:
        result.signature = minhash_signature(text, s.num_perm, s.shingle)
    return result


def process_unit(unit: Unit, s: Settings) -> list[Result]:
    results = _unit_results(unit, s)
    if s.redact:
        # A path is written to the corpus and the report: an address or a key in a file name is redacted
        # there as in the text (`docs/<email-1f0c2a9e>_notes.md`).
        for r in results:
            r.path, counts = redact_path(r.path, s.path_key)
            for kind, n in counts.items():
                r.redactions[f"path_{kind}"] = r.redactions.get(f"path_{kind}", 0) + n
    return results


def _unit_results(unit: Unit, s: Settings) -> list[Result]:
    results = [Result(unit.source, os.path.relpath(link, unit.root), 0, "symlink") for link in unit.links]
    results += [Result(unit.source, os.path.relpath(path, unit.root), 0, "hidden") for path in unit.hidden]
    if unit.archive:
        label = os.path.relpath(unit.archive, unit.root)
        try:
            for name, data, size, skipped in archive_members(unit.archive, s.max_bytes):
                if skipped:  # a hidden member or a link: counted, not read
                    results.append(Result(unit.source, f"{label}/{name}", 0, skipped))
                    continue
                results += process_file(unit.source, f"{label}/{name}", data, size, s)
        except Exception as err:  # a damaged archive is skipped whole, with its reason
            results.append(
                Result(unit.source, label, os.path.getsize(unit.archive), f"archive_error:{type(err).__name__}")
            )
        return results
    for path in unit.files:
        label = os.path.relpath(path, unit.root)
        try:
            size = os.path.getsize(path)
            data = None
            if size <= s.max_bytes:
                with open(path, "rb") as handle:
                    data = handle.read()
        except OSError:
            results.append(Result(unit.source, label, 0, "unreadable"))
            continue
        results += process_file(unit.source, label, data, size, s)
    return results
