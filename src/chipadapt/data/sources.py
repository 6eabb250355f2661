"""Readers for the corpus formats users bring: JSONL documents, folders of JSONL shards or of plain
files, and Hugging Face datasets.

Every reader yields `Document`s and names the file and line of any malformed record. What a reader
leaves out (blank texts, binary files, links to files read already, records a `where` filter
excludes) is counted, and told in one warning once the source is read through: nothing is dropped
without a word.
"""

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.binary_files import looks_binary
from chipadapt.io.jsonl import jsonl_records

log = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "folder", "hf")
# What readers leave out, by reason: (one, many) for the warning. "where" (records a filter excludes)
# is asked for, so it is counted for the empty-source error but not warned about.
SKIP_REASONS = {
    "blank": ("text left out: empty or whitespace only", "texts left out: empty or whitespace only"),
    "binary": ("binary file left out (a NUL byte, as curation judges)", "binary files left out (NUL bytes)"),
    "encoding": ("file left out: not UTF-8 text", "files left out: not UTF-8 text"),
    # Read, not left out: a file with a few undecodable bytes (`undecodable_share`) keeps its text.
    "repaired": (
        "file read with its undecodable bytes replaced by U+FFFD",
        "files read with their undecodable bytes replaced by U+FFFD",
    ),
    "link": ("symbolic link left out: its file is read already", "symbolic links left out: their files are read"),
    "broken_link": ("broken symbolic link left out", "broken symbolic links left out"),
    "linked_folder": ("linked folder not followed", "linked folders not followed"),
    # Not left out, but perhaps not what was meant: a folder of only .jsonl files is read as records.
    "jsonl_whole": (
        ".jsonl file read as one document (the folder holds other files; format: jsonl reads records)",
        ".jsonl files read as one document each (the folder holds other files; format: jsonl reads records)",
    ),
}


# At most this many files are named per reason in the warning; the rest are counted.
NAMED_PER_REASON = 5


class LeftOut(Counter):
    """A Counter of what a reader left out, by reason, that also keeps the files' names: a warning that
    says "2 files left out" without saying which leaves the user to hunt for them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.names: dict[str, list[str]] = {}


def note_left_out(skipped: Counter, reason: str, name: str) -> None:
    """Count `name` under `reason`, and keep its name where `skipped` keeps names."""
    skipped[reason] += 1
    if isinstance(skipped, LeftOut):
        skipped.names.setdefault(reason, []).append(name)


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable within its source: the file's relative path, or `file:line` for JSONL
    text: str


@dataclass
class SourceSpec:
    """One training source of a blend. The defaults live here only; YAML sets what differs."""

    path: str
    # auto: a save_to_disk folder or a .parquet/.arrow file is a dataset (hf), a folder whose files
    # are all .jsonl (or curation's corpus folder) is JSONL, another folder is one document per file,
    # a file is JSONL. jsonl on a folder reads its .jsonl files (or those `suffixes` selects).
    format: str = "auto"  # auto | jsonl | folder | hf
    text_key: str = "text"
    weight: float = 1.0  # sampling multiplier per epoch: >1 up-samples (docs), <1 down-samples (code)
    epochs: float = 1.0  # passes over the weighted source; each contributes weight*epochs of its tokens
    # Folder sources: which files count (endings such as .sv, any case); empty = every text file.
    # One string is one ending (`suffixes: .sv`), not a list of letters.
    suffixes: tuple[str, ...] | str = ()
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
    spec = SourceSpec(**values)
    suffix_tuple(spec, key)  # a malformed ending is refused before anything is read
    return spec


def suffix_tuple(spec: SourceSpec, key: str) -> tuple[str, ...]:
    """The file endings a folder source selects, lower case. A string is one ending: tuple(".sv")
    would be ('.', 's', 'v'), and every file ending in "v" would match."""
    value = spec.suffixes
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise ChipadaptError(f"{key}.suffixes: expected file endings such as [.v, .sv], got {value!r}")
    for suffix in value:
        if not isinstance(suffix, str) or len(suffix) < 2 or not suffix.startswith(".") or "/" in suffix:
            raise ChipadaptError(
                f"{key}.suffixes: {suffix!r} is not a file ending such as '.sv' (a dot, then the ending)"
            )
    return tuple(s.lower() for s in value)


def resolve_format(spec: SourceSpec, key: str) -> str:
    """jsonl, folder or hf: what `spec.format` names, or for `auto` what the path is (SourceSpec.format)."""
    if spec.format not in FORMATS:
        raise ChipadaptError(f"{key}.format: unknown format {spec.format!r} (use auto, jsonl, folder or hf)")
    if spec.format == "hf":
        return "hf"  # a hub id need not exist as a path; opening the dataset reports what is missing
    path = Path(spec.path)
    if not path.exists():
        raise ChipadaptError(f"{key}.path: {path} does not exist")
    fmt = detected_format(spec, key) if spec.format == "auto" else spec.format
    if fmt == "folder" and not path.is_dir():
        raise ChipadaptError(f"{key}: format 'folder' does not match {path}, a file")
    if fmt != "hf":
        only_datasets(spec, key, fmt)
    return fmt


def detected_format(spec: SourceSpec, key: str) -> str:
    from chipadapt.io.hf_dataset import is_dataset_path

    path = Path(spec.path)
    if is_dataset_path(path):
        return "hf"  # as SFT sources and evaluation files: its metadata files are no documents
    if path.is_file():
        return "jsonl"
    files, _ = walk_folder(path, suffix_tuple(spec, key))
    if curated_corpus(path) or (files and all(f.name.lower().endswith(".jsonl") for f in files)):
        return "jsonl"  # curation's shards, or any folder of JSONL files: records, not whole files
    return "folder"


def curated_corpus(path: Path) -> bool:
    """A folder `python -m chipadapt.data.curate` published (DIR/corpus): its shards are the data,
    its report files are not."""
    from chipadapt.io.outputs import written_by

    return written_by(path) == "curate"


def only_datasets(spec: SourceSpec, key: str, fmt: str) -> None:
    """split, subset and streaming choose within a Hugging Face dataset; on other sources they would
    be ignored without a word."""
    for name, default in (("split", "train"), ("subset", None), ("streaming", False)):
        if getattr(spec, name) != default:
            raise ChipadaptError(
                f"{key}.{name}: applies to Hugging Face datasets only; {spec.path} is read as {fmt} (remove it)"
            )


def walk_folder(root: Path, suffixes: tuple[str, ...]) -> tuple[list[Path], Counter]:
    """The files under `root` that `suffixes` select, in a stable order, and what was left out.
    A symbolic link to a file read already (e.g. alu_link.v -> alu.v) is left out, the file itself
    kept; a link to a file elsewhere is read. Links to folders are not followed (a cycle would never end)."""
    candidates, skipped = [], Counter()
    for folder, dirs, names in os.walk(root):
        skipped["linked_folder"] += sum(not d.startswith(".") and os.path.islink(os.path.join(folder, d)) for d in dirs)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or (suffixes and not name.lower().endswith(suffixes)):
                continue
            candidates.append(Path(folder) / name)
    if not any(f.is_symlink() for f in candidates):
        return candidates, +skipped  # the usual case: no path to resolve
    real = {f.resolve() for f in candidates if not f.is_symlink()}
    files, linked = [], set()
    for file in candidates:
        if file.is_symlink():
            if not file.exists():
                skipped["broken_link"] += 1
                continue
            target = file.resolve()
            if target in real or target in linked:
                skipped["link"] += 1
                continue
            linked.add(target)
        files.append(file)
    return files, +skipped


def _folder_selection(spec: SourceSpec, key: str, fmt: str) -> tuple[list[Path], Counter]:
    suffixes = suffix_tuple(spec, key)
    if fmt == "jsonl" and not suffixes:
        suffixes = (".jsonl",)  # a JSONL folder's data; curation's report files are not records
    return walk_folder(Path(spec.path), suffixes)


def source_files(spec: SourceSpec, key: str) -> list[Path]:
    """The files a source reads, in a stable order (their hashes key the token cache)."""
    fmt = resolve_format(spec, key)
    path = Path(spec.path)
    if fmt == "hf":
        return []  # keyed by the dataset's fingerprint instead (token_cache.cache_key)
    if path.is_file():
        return [path]
    return _folder_selection(spec, key, fmt)[0]


def source_fingerprint(spec: SourceSpec, key: str) -> list:
    """What identifies a source's content for caches: its files' hashes, or a dataset's fingerprint."""
    if resolve_format(spec, key) == "hf":
        from chipadapt.io.hf_dataset import dataset_fingerprint

        return [dataset_fingerprint(spec.path, spec.split, spec.subset, spec.streaming, key), spec.split, spec.subset]
    from chipadapt.io.hashing import sha256_file

    return [sha256_file(f) for f in source_files(spec, key)]


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


def decoded(data: bytes, undecodable_share: float) -> tuple[str | None, bool]:
    """(text, repaired): UTF-8 text; or, where at most `undecodable_share` of its characters are bytes
    that do not decode (one Latin-1 `é` in a UTF-8 note), the text with each replaced by U+FFFD, rather
    than the whole file lost for one byte; else (None, False). A file in another encoding (Shift-JIS,
    mostly-Latin-1 prose) has far more such bytes and is still left out, not read as mojibake."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    if undecodable_share <= 0:
        return None, False
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    return (text, True) if bad <= undecodable_share * len(text) else (None, False)


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


def skipped_summary(skipped: Counter) -> str:
    """`2 binary files; 1 symbolic link to a file read already`; empty when nothing was left out."""
    parts = []
    names = getattr(skipped, "names", {})
    for reason, (one, many) in SKIP_REASONS.items():
        if skipped.get(reason):
            part = f"{skipped[reason]:,} {one if skipped[reason] == 1 else many}"
            if named := names.get(reason):
                rest = skipped[reason] - min(len(named), NAMED_PER_REASON)
                part += f" ({', '.join(named[:NAMED_PER_REASON])}{f' and {rest:,} more' if rest > 0 else ''})"
            parts.append(part)
    return "; ".join(parts)


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
