"""The per-file work, run in worker processes: read, detect, extract, check, label, redact, sketch."""

import os
from dataclasses import dataclass, field

import numpy as np

from chipadapt.curation.dedup import content_hash, minhash_signature
from chipadapt.curation.extract import BINARY_EXTRACTORS, ExtractError, html_text
from chipadapt.curation.filters import GeneratedRules, generated_reason, redact
from chipadapt.curation.languages import BINARY_FORMATS, language_of
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


@dataclass
class Result:
    source: str
    path: str
    bytes: int
    status: str  # "ok" or the reason the file was skipped
    lang: str = ""
    text: str = ""
    generated: str | None = None
    redactions: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    signature: np.ndarray | None = None


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
    if len(text.strip()) < s.min_chars:
        return Result(source, path, size, "too_short", lang)
    if text.count("\n") + 1 > s.max_lines:
        return Result(source, path, size, "too_many_lines", lang)
    redactions = {}
    if s.redact:
        text, redactions = redact(text)
    result = Result(source, path, size, "ok", lang, text, generated_reason(text, lang, s.generated), redactions)
    result.digest = content_hash(text)
    if s.near_dedup:
        result.signature = minhash_signature(text, s.num_perm, s.shingle)
    return result


def process_unit(unit: Unit, s: Settings) -> list[Result]:
    results = []
    if unit.archive:
        label = os.path.relpath(unit.archive, unit.root)
        try:
            for name, data, size in archive_members(unit.archive, s.max_bytes):
                results.append(process_bytes(unit.source, f"{label}/{name}", data, size, s))
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
        results.append(process_bytes(unit.source, label, data, size, s))
    return results
