"""Hugging Face datasets as sources (`format: hf`): a hub id in the cache, a `save_to_disk` folder,
or a local folder or file of parquet / arrow / json / csv, opened with `datasets`.

Users coming from TRL and lm-eval keep their data as datasets; this reads them where they are
instead of asking for a JSONL export. `streaming: true` iterates a large set without building the
arrow cache first. The token cache keys a dataset by its fingerprint (`datasets`' own for a loaded
split; for a streamed one, the data files' names, sizes and modification times, or for a hub id the
split sizes the hub recorded), so a changed dataset is tokenized again.

Offline first: with HF_HUB_OFFLINE=1 (HF_DATASETS_OFFLINE follows it) a hub id comes from the cache
or fails in one line.
"""

import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.hashing import sha256_json

log = logging.getLogger(__name__)

# File suffix -> the `datasets` builder that reads it.
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# Larger than any metadata file `save_to_disk` writes: a bigger state.json is some other program's.
_METADATA_BYTES = 1 << 20


def _json_object(path: Path) -> dict:
    """The JSON object in `path`, or {} where it is missing, too large, unreadable or not an object."""
    try:
        if not path.is_file() or path.stat().st_size > _METADATA_BYTES:
            return {}
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _saved_to_disk(folder: Path) -> bool:
    """Whether `folder` is what `save_to_disk` wrote (what `load_from_disk` opens), by its signature, not by
    a file name alone: a source repository may hold a `state.json` of its own (`{"k": 1}`), and was taken
    for a dataset. A Dataset's folder has a state.json listing its `_data_files` beside a
    dataset_info.json; a DatasetDict's has a dataset_dict.json listing its `splits`."""
    if isinstance(_json_object(folder / "dataset_dict.json").get("splits"), list):
        return True
    return (folder / "dataset_info.json").is_file() and isinstance(
        _json_object(folder / "state.json").get("_data_files"), list
    )


def _arrow_dataset_folder(folder: Path) -> bool:
    """A dataset's .arrow files beside its dataset_info.json, without the state.json `load_from_disk` needs
    (`datasets` reads the folder as data files)."""
    return (folder / "dataset_info.json").is_file() and any(folder.glob("*.arrow"))


def local_location(path: str) -> Path:
    """The local file or folder `path` names: itself, or for a hub id the snapshot `hf download
    --repo-type dataset` put in the Hugging Face cache (never downloaded here: online, datasets
    fetches or streams only what it needs)."""
    local = Path(path).expanduser()
    if local.exists():
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(path, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, ValueError):
        return local  # not cached as a hub snapshot: datasets looks in its own cache (or the hub)


def _key(key: str | None, field: str, path: str | Path) -> str:
    """Where an error points: the source's config key (`data.sources.NAME.split`), or for a dataset
    named by a path alone (key None; `hf:PATH:SPLIT` picks its split) the path itself."""
    return f"{key}.{field}" if key else str(path)


def _setting(key: str | None, field: str, path: str | Path, value: str) -> str:
    """A setting as an error names it: `data.sources.NAME.split: 'test'`, or `PATH: split 'test'`."""
    return f"{key}.{field}: {value!r}" if key else f"{path}: {field} {value!r}"


def only_what_applies(local: Path, path: str, split: str, subset: str | None, key: str | None) -> None:
    """A single file has no splits and no subsets, and a save_to_disk folder no subsets: `datasets`
    would read the whole file under any split name (which also renames every held-out id) and
    ignore a subset. A folder of data files or a hub id checks both itself."""
    saved = local.is_dir() and _saved_to_disk(local)
    if subset is not None and (local.is_file() or saved):
        kind = "a single file" if local.is_file() else "a save_to_disk folder"
        raise ChipadaptError(
            f"{_setting(key, 'subset', path, subset)} does not apply to {local}, {kind} "
            "(a subset is a configuration of a hub dataset); remove it"
        )
    if local.is_file() and split != "train":
        raise ChipadaptError(
            f"{_setting(key, 'split', path, split)} does not apply to {local}, a single file read whole "
            "(as split 'train'); remove it, or point at the file of that split"
        )


def open_dataset(path: str, split: str, subset: str | None, streaming: bool, key: str | None):
    """The split as a `datasets.Dataset` (or `IterableDataset` when streaming)."""
    import datasets

    local = local_location(path)
    only_what_applies(local, path, split, subset, key)
    try:
        if local.is_dir() and _saved_to_disk(local):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    where = f"{key}.split: {split!r}" if key else f"{path}: split {split!r}"
                    pick = "" if key else f"; pick one as hf:{path}:SPLIT"
                    raise ChipadaptError(f"{where} is not in {local} (splits: {', '.join(loaded)}){pick}")
                loaded = loaded[split]
            elif split != "train":  # one Dataset saved whole: no split to choose, as for a single file
                raise ChipadaptError(
                    f"{_setting(key, 'split', path, split)} does not apply to {local}, a save_to_disk dataset "
                    "of one split read whole; remove it"
                )
            return loaded.to_iterable_dataset() if streaming else loaded
        if local.is_file():
            builder = BUILDERS.get(local.suffix.lower())
            if builder is None:
                raise ChipadaptError(f"{_key(key, 'path', path)}: {local} is not a parquet, arrow, json or csv file")
            return datasets.load_dataset(builder, data_files={split: str(local)}, split=split, streaming=streaming)
        # A folder of data files, or a hub id (looked up in the cache when offline).
        return datasets.load_dataset(
            str(local) if local.is_dir() else path, name=subset, split=split, streaming=streaming
        )
    except ChipadaptError:
        raise
    except (
        FileNotFoundError,
        ValueError,
        KeyError,
        ConnectionError,
        OSError,
        datasets.exceptions.DatasetNotFoundError,
    ) as err:
        where = (
            ""
            if local.exists()
            else " (not a local path; as a hub id it is not in the Hugging Face cache, or the hub is offline)"
        )
        opened = f"{path} could not be opened as a Hugging Face dataset{where}"
        raise ChipadaptError(f"{_key(key, 'path', path)}: {opened}: {_first_line(err)}") from None


def dataset_fingerprint(path: str, split: str, subset: str | None, streaming: bool, key: str) -> str:
    """What the token cache keys a dataset source by (see the module docstring)."""
    local = local_location(path)
    if not streaming:
        return open_dataset(path, split, subset, streaming, key)._fingerprint
    if local.exists():
        files = (
            [local]
            if local.is_file()
            else sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith("."))
        )
        stats = [
            [str(f.relative_to(local)) if f != local else f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files
        ]
        return sha256_json({"files": stats, "split": split, "subset": subset})[:16]
    # Streamed from the hub: the split sizes the hub recorded stand in for the data.
    info = open_dataset(path, split, subset, streaming, key).info
    splits = {name: [s.num_examples, s.num_bytes] for name, s in (info.splits or {}).items()}
    return sha256_json({"hub": path, "subset": subset, "split": split, "version": str(info.version), "splits": splits})[
        :16
    ]


def hf_records(
    path: str, split: str, subset: str | None, streaming: bool, key: str | None
) -> Iterator[tuple[int, dict]]:
    """(row index, record) for every row of the split."""
    dataset: Iterable[dict] = open_dataset(path, split, subset, streaming, key)
    yield from enumerate(dataset)


# Files that only have a `path` (evaluation sets, passages and queries files) name a dataset as
# `hf:ID_OR_FOLDER[:SPLIT]`, or are one by their form: a .parquet / .arrow file or a save_to_disk folder.
PREFIX = "hf:"
SPLIT = re.compile(r"^(?P<path>.+?)(:(?P<split>[\w.-]+))?$")


def is_dataset_path(path: str | Path) -> bool:
    text = str(path)
    if text.startswith(PREFIX):
        return True
    local = Path(text).expanduser()
    return (local.is_file() and local.suffix.lower() in (".parquet", ".arrow")) or (
        local.is_dir() and (_saved_to_disk(local) or _arrow_dataset_folder(local))
    )


def dataset_path_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(row number from 1, record) of the dataset a `path` names (see is_dataset_path)."""
    text = str(path)
    if text.startswith(PREFIX):
        match = SPLIT.match(text[len(PREFIX) :])
        name, split = match["path"], match["split"] or "train"
    else:
        name, split = text, "train"
    for index, record in hf_records(name, split, None, False, None):
        yield index + 1, record
