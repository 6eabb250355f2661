"""What a recorded answer depends on, by identity rather than by path: a file or folder by the size and
modification time of its files, a model package by its installed files, chipadapt's own code by its source.
Shared by evaluate.py's finished tasks (eval/finished_tasks.py) and SteerLM's progress journals
(steerlm/progress_journal.py), below both."""

from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

from chipadapt.io.hashing import sha256_bytes, sha256_json, stat_signature

# Settings that name where a task writes or caches, not what it reads: their contents change as it runs.
OUTPUT_KEYS = {"index_dir", "misses_file"}
MAX_FILES = 20_000  # a folder with more is taken by name: its walk would cost more than the task it keys


def identity(path: Path) -> str:
    """Size and modification time of every visible file under `path` (or of the file); a huge tree (a
    cache, a home folder) by name only: its walk would cost more than the task it keys."""
    if path.is_dir() and len(list(islice(path.rglob("*"), MAX_FILES + 1))) > MAX_FILES:
        return sha256_json(["folder", str(path.resolve())])
    signature = stat_signature(path)
    if path.is_file():  # the same file under another name (a checkout moved elsewhere) is the same data
        signature = [entry[1:] for entry in signature]
    return sha256_json(signature)


def package_identity(name: str) -> str | None:
    """A model shipped as a Python package (`encoders.<name>.package`) by its installed files, found
    without importing it: a reinstalled or upgraded package is another model."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    # Not its bytecode: Python writes __pycache__ at the first import, which would change the key once.
    files = stat_signature(Path(next(iter(spec.submodule_search_locations))))
    return sha256_json([entry for entry in files if "__pycache__" not in Path(entry[0]).parts])


def by_identity(value: Any, key: str = "") -> Any:
    """The settings with each existing file or folder they name replaced by its identity."""
    if isinstance(value, dict):
        return {k: by_identity(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [by_identity(v, key) for v in value]
    if key == "package" and isinstance(value, str) and value.isidentifier():
        return {"package": value, "identity": package_identity(value)}
    if isinstance(value, str) and key not in OUTPUT_KEYS and 0 < len(value) < 4096:
        path = Path(value).expanduser()
        try:
            if path.exists():
                return {"identity": identity(path)}
        except OSError:  # a value too long or odd for a path is a plain setting
            return value
    return value


@cache
def code_version() -> dict[str, str | None]:
    """chipadapt's own source (every module of the package, so an uncommitted edit counts and a commit
    that changes only documentation does not), torch's and transformers' versions."""
    import torch
    import transformers

    package = Path(__file__).resolve().parents[1]
    sources = sorted(package.rglob("*.py"))
    source = sha256_json([[str(p.relative_to(package)), sha256_bytes(p.read_bytes())] for p in sources])
    return {"chipadapt_source": source, "torch": torch.__version__, "transformers": transformers.__version__}
