"""Readers for the corpus formats users bring: JSONL documents, folders of JSONL shards or of plain
files, and Hugging Face datasets.

Every reader yields `Document`s and names the file and line of any malformed record. What a reader
leaves out (blank texts, binary files, links to files read already, records a `where` filter
excludes) is counted, and told in one warning once the source is read through: nothing is dropped
without a word.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chipadapt.data.folder_walk import decoded
from chipadapt.data.left_out import LeftOut, note_left_out, skipped_summary
from chipadapt.data.source_spec import SourceSpec, _folder_selection, resolve_format
from chipadapt.errors import ChipadaptError
from chipadapt.io.binary_files import looks_binary
from chipadapt.io.jsonl import jsonl_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable within its source: the file's relative path, or `file:line` for JSONL
    text: str


def _where(spec: SourceSpec) -> dict[str, list]:
    return {field: allowed if isinstance(allowed, list) else [allowed] for field, allowed in (spec.where or {}).items()}


def _excluded(record: dict, where: dict[str, list]) -> bool:
    return any(record.get(field) not in allowed for field, allowed in where.items())


def read_jsonl(path: Path, label: str, spec: SourceSpec, key: str, skipped: Counter) -> Iterator[Document]:
    """`label`: the file's name in document ids (its path relative to a folder source)."""
    where = _where(spec)
    for lineno, record in jsonl_records(path, max_line_bytes=spec.max_bytes, limit_key=f"{key}.max_bytes"):
        if _excluded(record, where):  # before the text check: a record the filter drops need not be text
            skipped["where"] += 1
            continue
        text = record.get(spec.text_key)
        if not isinstance(text, str):
            raise ChipadaptError(f"{path}:{lineno}: no string field {spec.text_key!r}")
        doc_id = record.get("path") or record.get("id") or f"{label}:{lineno}"
        yield Document(doc_id=str(doc_id), text=text)


def read_jsonl_source(spec: SourceSpec, key: str, skipped: Counter) -> Iterator[Document]:
    """A JSONL file, or every JSONL file of a folder in order (ids `relative/path.jsonl:line`)."""
    root = Path(spec.path)
    if root.is_file():
        yield from read_jsonl(root, root.name, spec, key, skipped)
        return
    files, left_out = _folder_selection(spec, key, "jsonl")
    skipped.update(left_out)
    for file in files:
        yield from read_jsonl(file, str(file.relative_to(root)), spec, key, skipped)


def read_hf(spec: SourceSpec, key: str, skipped: Counter) -> Iterator[Document]:
    """Documents from a Hugging Face dataset split; `where` filters rows as for JSONL. Rows are
    numbered from 1 in messages, as JSONL lines are."""
    from chipadapt.io.hf_dataset import hf_records

    where = _where(spec)
    for index, record in hf_records(spec.path, spec.split, spec.subset, spec.streaming, key):
        if _excluded(record, where):
            skipped["where"] += 1
            continue
        row = f"row {index + 1} of {spec.path} [{spec.split}]"
        if spec.text_key not in record:
            raise ChipadaptError(
                f"{key}: {row} has no string field {spec.text_key!r} (columns: {', '.join(record)}); set {key}.text_key"
            )
        text = record[spec.text_key]
        if not isinstance(text, str):
            kind = "null" if text is None else f"a {type(text).__name__}"
            raise ChipadaptError(f"{key}: {row}: {spec.text_key!r} is {kind}, not text")
        doc_id = record.get("path") or record.get("id") or f"{spec.split}:{index}"
        yield Document(doc_id=str(doc_id), text=text)


def read_folder(spec: SourceSpec, key: str, skipped: Counter, undecodable_share: float = 0.0) -> Iterator[Document]:
    """One document per file; binary and non-UTF-8 files are counted and left out (named where `skipped`
    keeps names), except a file with few undecodable bytes where `undecodable_share` allows (decoded)."""
    root = Path(spec.path)
    files, left_out = _folder_selection(spec, key, "folder")
    skipped.update(left_out)
    for file in files:
        size = file.stat().st_size
        if size > spec.max_bytes:
            raise ChipadaptError(
                f"{file}: {size:,} bytes, over the {spec.max_bytes:,}-byte document limit; curate the folder "
                f"(python -m chipadapt.data.curate) or raise {key}.max_bytes"
            )
        data = file.read_bytes()
        name = str(file.relative_to(root))
        if looks_binary(data):  # a file of NULs is valid UTF-8: decoding alone would train on it
            note_left_out(skipped, "binary", name)
            continue
        text, repaired = decoded(data, undecodable_share)
        if text is None:
            note_left_out(skipped, "encoding", name)
            continue
        if repaired:
            note_left_out(skipped, "repaired", name)
        if spec.format == "auto" and file.name.lower().endswith(".jsonl"):  # `folder` asked for whole files
            skipped["jsonl_whole"] += 1
        yield Document(doc_id=str(file.relative_to(root)), text=text)


def _documents(spec: SourceSpec, key: str, skipped: Counter, undecodable_share: float) -> Iterator[Document]:
    fmt = resolve_format(spec, key)
    if fmt == "hf":
        return read_hf(spec, key, skipped)
    if fmt == "jsonl":
        return read_jsonl_source(spec, key, skipped)
    if spec.where:
        raise ChipadaptError(f"{key}.where: only JSONL and dataset sources can be filtered by field")
    return read_folder(spec, key, skipped, undecodable_share)


def tell_skipped(key: str, path: str, skipped: Counter) -> None:
    if summary := skipped_summary(skipped):
        log.warning("%s: %s: %s", key, path, summary)


def iter_source(
    spec: SourceSpec, key: str, skipped: Counter | None = None, undecodable_share: float = 0.0
) -> Iterator[Document]:
    """The non-empty documents of a source, as they are read. What is left out is counted in
    `skipped` (when given) and warned about once the source is read through; a source that yields
    nothing is left to the caller's error (no_documents), which says why. `undecodable_share`: see
    `decoded` (0, for sources whose caches are keyed by file content alone: every non-UTF-8 file out)."""
    skipped = LeftOut() if skipped is None else skipped
    yielded = False
    for doc in _documents(spec, key, skipped, undecodable_share):
        if not doc.text.strip():
            note_left_out(skipped, "blank", doc.doc_id)
            continue
        yielded = True
        yield doc
    if yielded:
        tell_skipped(key, spec.path, skipped)


def no_documents(spec: SourceSpec, key: str, skipped: Counter) -> ChipadaptError:
    """The error for a source that gave no document, naming the filter when that is why."""
    if spec.where and skipped.get("where") and not skipped.get("blank"):
        return ChipadaptError(
            f"{key}.where: {spec.where} matched none of the {skipped['where']:,} records in {spec.path}"
        )
    summary = skipped_summary(skipped)
    return ChipadaptError(f"{key}: {spec.path} holds no non-empty documents" + (f" ({summary})" if summary else ""))


def read_source(spec: SourceSpec, key: str) -> list[Document]:
    """All non-empty documents of a source; an empty source is an error naming its config key."""
    skipped = LeftOut()
    docs = list(iter_source(spec, key, skipped))
    if not docs:
        raise no_documents(spec, key, skipped)
    return docs
