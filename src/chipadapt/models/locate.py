"""Where a model named in a config lives: a local folder, a GGUF file, or a hub id in the HF cache.

Users arrive with whatever they already have: a folder they trained, a `.gguf` from llama.cpp land,
or a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`) that `huggingface-cli download` or an earlier
`from_pretrained` put into the Hugging Face cache. Every config key that names a model
(`model.path`, `models.chip/instruct/base`, encoders, the judge, the attribute model) goes through
`locate_model`, so they all accept the same three forms.

Offline first: with `HF_HUB_OFFLINE=1` a hub id is only looked up in the cache; a miss is one line
that says so. Online, only safetensors, configs and tokenizer files are fetched (no pickles, no
code: nothing here runs remote code).
"""

import hashlib
import re
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.cache_root import cache_root

# A hub id: `name` or `org/name`, optionally `@revision`; anything with other path syntax is a path.
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?)(@(?P<revision>[\w./-]+))?$")
# Files a model folder needs; pickled weights (*.bin, *.pt) are deliberately not among them.
HUB_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def conversion_cache() -> Path:
    """Converted GGUF folders go where conf/paths/default.yaml puts model_cache: $CHIPADAPT_CACHE/models."""
    return cache_root() / "models"


def locate_model(path: str | Path, key: str) -> Path:
    """The local folder holding the model `path` names; `key` is the config key, for messages."""
    text = str(path)
    local = Path(text).expanduser()
    if local.is_dir():
        return local
    if local.is_file():
        if local.suffix.lower() == ".gguf":
            return gguf_folder(local, key)
        raise ChipadaptError(f"{key}: {local} is a file; give a model folder, a .gguf file or a hub id")
    match = _hub_id(text)
    if match is None:
        raise ChipadaptError(f"{key}: {text} does not exist")
    return hub_snapshot(match["repo"], match["revision"], key)


def _hub_id(text: str) -> re.Match | None:
    return None if text.startswith((".", "~")) else HUB_ID.match(text)


def names_nothing(path: str | Path) -> bool:
    """`path` is no file or folder here and not a hub id either: locate_model refuses it as not existing.
    Asked with nothing imported, so an entry point refuses such a model before its heavy imports."""
    local = Path(str(path)).expanduser()
    return not local.is_dir() and not local.is_file() and _hub_id(str(path)) is None


def hub_snapshot(repo_id: str, revision: str | None, key: str) -> Path:
    """The cached snapshot of a hub model; downloaded only when the hub is allowed (HF_HUB_OFFLINE unset)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = constants.HF_HUB_OFFLINE
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, local_files_only=offline)
    except (LocalEntryNotFoundError, FileNotFoundError):
        where = f"HF_HUB_CACHE={constants.HF_HUB_CACHE}"
        cached = cached_revisions(Path(constants.HF_HUB_CACHE), repo_id)
        if cached is not None:
            # The repo is cached, only not at this revision: saying "not in the cache" sends the
            # user looking for the wrong problem.
            wanted = revision or "main"
            download = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
            raise ChipadaptError(
                f"{key}: {repo_id} is in the Hugging Face cache ({where}) but not at revision {wanted} "
                f"(cached: {', '.join(cached) or 'no complete snapshot'}); "
                + (
                    f"HF_HUB_OFFLINE=1, so it was not downloaded (run `{download}` where the hub is reachable, "
                    f"or name a cached revision: {repo_id}@REVISION)"
                    if offline
                    else "and the hub could not be reached to fetch it"
                )
            ) from None
        if offline:
            raise ChipadaptError(
                f"{key}: {repo_id} is not a local folder and not in the Hugging Face cache ({where}); "
                f"HF_HUB_OFFLINE=1, so it was not downloaded (run `hf download {repo_id}` where the hub "
                "is reachable, or point at a local folder)"
            ) from None
        raise ChipadaptError(
            f"{key}: {repo_id} is not a local folder, and the hub could not be reached to fetch it ({where})"
        ) from None
    except RevisionNotFoundError:
        raise ChipadaptError(f"{key}: {repo_id} has no revision {revision} on the hub") from None
    except (RepositoryNotFoundError, HFValidationError):
        raise ChipadaptError(f"{key}: {repo_id} is not a local folder and not a model on the hub") from None
    return Path(folder)


def cached_revisions(hub_cache: Path, repo_id: str) -> list[str] | None:
    """The revisions of `repo_id` the cache holds (`main (0123abcd)`, then snapshots no ref names);
    None when the repo is not in the cache at all. Only folder names are read: cheap."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    if not repo.is_dir():
        return None
    snapshots = sorted(p.name for p in (repo / "snapshots").glob("*") if p.is_dir())
    named, listed = [], set()
    for ref in sorted(p for p in (repo / "refs").rglob("*") if p.is_file()):
        try:
            commit = ref.read_text().strip()
        except OSError:
            continue
        if commit in snapshots:
            named.append(f"{ref.relative_to(repo / 'refs')} ({commit[:8]})")
            listed.add(commit)
    return named + [commit[:12] for commit in snapshots if commit not in listed]


def gguf_folder(gguf: Path, key: str) -> Path:
    """A GGUF file as a Hugging Face folder, converted once into the cache (keyed by the file's
    path, size and modification time: a replaced file converts again)."""
    from chipadapt.io.lock import cache_entry_lock
    from chipadapt.models.gguf_import import convert_gguf, gguf_conversion_version

    stat = gguf.stat()
    stamp = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{gguf_conversion_version(gguf)}"
    stamp = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    folder = conversion_cache() / f"gguf--{gguf.stem}--{stamp}"
    if (folder / "config.json").is_file():
        return folder
    with cache_entry_lock(folder):
        if (folder / "config.json").is_file():  # converted by another process while this one waited
            return folder
        return convert_gguf(gguf.parent, gguf.name, folder, key)
