"""Readers for the corpus formats users bring: JSONL documents and folders of plain files.

Every reader yields `Document`s and names the file and line of any malformed record.
"""

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import jsonl_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable within its source: the file's relative path, or `file:line` for JSONL
    text: str


@dataclass
class SourceSpec:
    """One training source of a blend. The defaults live here only; YAML sets what differs."""

    path: str
    format: str = "auto"  # auto | jsonl | folder
    text_key: str = "text"
    weight: float = 1.0  # sampling multiplier per epoch: >1 up-samples (docs), <1 down-samples (code)
    epochs: float = 1.0  # passes over the weighted source; each contributes weight*epochs of its tokens
    # Folder sources: which files count as documents (suffixes, lower case); empty = every text file.
    suffixes: tuple[str, ...] = ()
    # Validation split that this source's held-out documents join; null holds none out (e.g. general
    # text whose own test set is a separate val source).
    val_split: str | None = "domain"
    # General (public) text mixed into the blend; domain-only steps such as tokenizer training skip it.
    general: bool = False
    # JSONL sources: keep only records whose fields have these values (one value or a list),
    # e.g. {lang: markdown}; folder sources take no filter.
    where: dict | None = None


def resolve_format(spec: SourceSpec, key: str) -> str:
    path = Path(spec.path)
    if not path.exists():
        raise ChipadaptError(f"{key}.path: {path} does not exist")
    if spec.format == "auto":
        return "folder" if path.is_dir() else "jsonl"
    if spec.format not in ("jsonl", "folder"):
        raise ChipadaptError(f"{key}.format: unknown format {spec.format!r} (use auto, jsonl or folder)")
    if (spec.format == "folder") != path.is_dir():
        raise ChipadaptError(f"{key}: format {spec.format!r} does not match {path}")
    return spec.format


def source_files(spec: SourceSpec, key: str) -> list[Path]:
    """The files a source reads, in a stable order (their hashes key the token cache)."""
    fmt = resolve_format(spec, key)
    path = Path(spec.path)
    if fmt == "jsonl":
        return [path]
    suffixes = tuple(s.lower() for s in spec.suffixes)
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if suffixes and not name.lower().endswith(suffixes):
                continue
            files.append(Path(root) / name)
    return files


def read_jsonl(path: Path, text_key: str, where: dict | None = None) -> Iterator[Document]:
    where = {field: allowed if isinstance(allowed, list) else [allowed] for field, allowed in (where or {}).items()}
    for lineno, record in jsonl_records(path):
        text = record.get(text_key)
        if not isinstance(text, str):
            raise ChipadaptError(f"{path}:{lineno}: no string field {text_key!r}")
        if any(record.get(field) not in allowed for field, allowed in where.items()):
            continue
        doc_id = record.get("path") or record.get("id") or f"{path.name}:{lineno}"
        yield Document(doc_id=str(doc_id), text=text)


def read_folder(root: Path, files: list[Path]) -> Iterator[Document]:
    skipped = 0
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            # Binary or non-UTF-8 files are not documents; curation (stage=curate) reports them.
            skipped += 1
            continue
        yield Document(doc_id=str(file.relative_to(root)), text=text)
    if skipped:
        log.warning("%s: skipped %d files that are not UTF-8 text", root, skipped)


def iter_source(spec: SourceSpec, key: str) -> Iterator[Document]:
    """The non-empty documents of a source, as they are read."""
    files = source_files(spec, key)
    if resolve_format(spec, key) == "jsonl":
        docs = read_jsonl(files[0], spec.text_key, spec.where)
    else:
        if spec.where:
            raise ChipadaptError(f"{key}.where: only JSONL sources can be filtered by field")
        docs = read_folder(Path(spec.path), files)
    return (d for d in docs if d.text.strip())


def read_source(spec: SourceSpec, key: str) -> list[Document]:
    """All non-empty documents of a source; an empty source is an error naming its config key."""
    docs = list(iter_source(spec, key))
    if not docs:
        raise ChipadaptError(f"{key}: {spec.path} holds no non-empty documents")
    return docs
