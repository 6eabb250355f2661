"""Readers for the corpus formats users bring: JSONL documents and folders of plain files.

Every reader yields `Document`s and names the file and line of any malformed record.
"""

import dataclasses
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
    # Largest document (a JSONL line, a folder file) read, in bytes: tokenizing one document costs
    # a couple of hundred times its size in memory, so a stray huge file is an error, not a swap storm.
    max_bytes: int = 16 << 20
    # `format: hf` (a Hugging Face dataset: hub id in the cache, save_to_disk folder, or parquet /
    # arrow / json files): the split, the subset (config name) and whether to stream it.
    split: str = "train"
    subset: str | None = None
    streaming: bool = False


def source_spec(values: dict, key: str) -> SourceSpec:
    """A SourceSpec from a config entry; an unknown field or a value of the wrong kind names `key`."""
    if not isinstance(values, dict):
        raise ChipadaptError(f"{key}: expected a source with a `path`, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(SourceSpec)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ChipadaptError(f"{key}.{unknown[0]}: unknown source setting (known: {', '.join(fields)})")
    if "path" not in values or values["path"] in (None, ""):
        raise ChipadaptError(f"{key}.path: required, not set")
    for name in ("weight", "epochs", "max_bytes"):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ChipadaptError(f"{key}.{name}: {value!r} is not a non-negative number")
    return SourceSpec(**values)


def resolve_format(spec: SourceSpec, key: str) -> str:
    if spec.format == "hf":
        return "hf"  # a hub id need not exist as a path; opening the dataset reports what is missing
    path = Path(spec.path)
    if not path.exists():
        raise ChipadaptError(f"{key}.path: {path} does not exist")
    if spec.format == "auto":
        return "folder" if path.is_dir() else "jsonl"
    if spec.format not in ("jsonl", "folder"):
        raise ChipadaptError(f"{key}.format: unknown format {spec.format!r} (use auto, jsonl, folder or hf)")
    if (spec.format == "folder") != path.is_dir():
        raise ChipadaptError(f"{key}: format {spec.format!r} does not match {path}")
    return spec.format


def source_files(spec: SourceSpec, key: str) -> list[Path]:
    """The files a source reads, in a stable order (their hashes key the token cache)."""
    fmt = resolve_format(spec, key)
    path = Path(spec.path)
    if fmt == "hf":
        return []  # keyed by the dataset's fingerprint instead (token_cache.cache_key)
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


def source_fingerprint(spec: SourceSpec, key: str) -> list:
    """What identifies a source's content for caches: its files' hashes, or a dataset's fingerprint."""
    if resolve_format(spec, key) == "hf":
        from chipadapt.io.hf_dataset import dataset_fingerprint

        return [dataset_fingerprint(spec.path, spec.split, spec.subset, spec.streaming, key), spec.split, spec.subset]
    from chipadapt.io.hashing import sha256_file

    return [sha256_file(f) for f in source_files(spec, key)]


def read_jsonl(path: Path, text_key: str, where: dict | None, max_bytes: int, limit_key: str) -> Iterator[Document]:
    where = {field: allowed if isinstance(allowed, list) else [allowed] for field, allowed in (where or {}).items()}
    for lineno, record in jsonl_records(path, max_line_bytes=max_bytes, limit_key=limit_key):
        text = record.get(text_key)
        if not isinstance(text, str):
            raise ChipadaptError(f"{path}:{lineno}: no string field {text_key!r}")
        if any(record.get(field) not in allowed for field, allowed in where.items()):
            continue
        doc_id = record.get("path") or record.get("id") or f"{path.name}:{lineno}"
        yield Document(doc_id=str(doc_id), text=text)


def read_hf(spec: SourceSpec, key: str) -> Iterator[Document]:
    """Documents from a Hugging Face dataset split; `where` filters rows as for JSONL."""
    from chipadapt.io.hf_dataset import hf_records

    where = {
        field: allowed if isinstance(allowed, list) else [allowed] for field, allowed in (spec.where or {}).items()
    }
    for index, record in hf_records(spec.path, spec.split, spec.subset, spec.streaming, key):
        text = record.get(spec.text_key)
        if not isinstance(text, str):
            raise ChipadaptError(
                f"{key}: row {index} of {spec.path} [{spec.split}] has no string field {spec.text_key!r} "
                f"(columns: {', '.join(record)}); set {key}.text_key"
            )
        if any(record.get(field) not in allowed for field, allowed in where.items()):
            continue
        doc_id = record.get("path") or record.get("id") or f"{spec.split}:{index}"
        yield Document(doc_id=str(doc_id), text=text)


def read_folder(root: Path, files: list[Path], max_bytes: int, limit_key: str) -> Iterator[Document]:
    skipped = 0
    for file in files:
        size = file.stat().st_size
        if size > max_bytes:
            raise ChipadaptError(
                f"{file}: {size:,} bytes, over the {max_bytes:,}-byte document limit; curate the folder "
                f"(python -m chipadapt.data.curate) or raise {limit_key}"
            )
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
    if resolve_format(spec, key) == "hf":
        docs = read_hf(spec, key)
    elif resolve_format(spec, key) == "jsonl":
        docs = read_jsonl(files[0], spec.text_key, spec.where, spec.max_bytes, f"{key}.max_bytes")
    else:
        if spec.where:
            raise ChipadaptError(f"{key}.where: only JSONL sources can be filtered by field")
        docs = read_folder(Path(spec.path), files, spec.max_bytes, f"{key}.max_bytes")
    return (d for d in docs if d.text.strip())


def read_source(spec: SourceSpec, key: str) -> list[Document]:
    """All non-empty documents of a source; an empty source is an error naming its config key."""
    docs = list(iter_source(spec, key))
    if not docs:
        raise ChipadaptError(f"{key}: {spec.path} holds no non-empty documents")
    return docs
