"""A corpus source as a blend's config names it (SourceSpec), checked, and what it is: its format (a
JSONL file or folder, a folder of plain files, a Hugging Face dataset), the files it reads, and what
identifies its content for caches."""

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from chipadapt.data.folder_walk import walk_folder
from chipadapt.errors import ChipadaptError

FORMATS = ("auto", "jsonl", "folder", "hf")


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
