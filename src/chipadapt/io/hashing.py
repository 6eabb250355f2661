"""Content hashes for cache keys and run manifests."""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
# Above this size a file is fingerprinted by its size and sampled blocks rather than read whole,
# so manifests of 70B checkpoints stay cheap. The manifest says which files were sampled.
FULL_HASH_LIMIT = 1 << 30


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    size = path.stat().st_size
    if size <= FULL_HASH_LIMIT:
        return {"sha256": sha256_file(path), "bytes": size}
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for offset in range(0, size, size // 16):
            handle.seek(offset)
            digest.update(handle.read(_CHUNK))
    return {"sampled_sha256": digest.hexdigest(), "bytes": size}


def fingerprint_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """Per-file fingerprints of a folder (e.g. a Hugging Face model folder), sorted by name."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): fingerprint_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def stat_signature(path: str | os.PathLike, hidden: bool = False) -> list:
    """(name, size, mtime) of a file, or of every file under a folder (with `hidden`, also those under
    dot-names: our markers, locks and temporary files): cheap for a 70B model folder, and changed by any
    rewrite."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return [(path.name, stat.st_size, stat.st_mtime_ns)]
    files = []
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and (hidden or not any(part.startswith(".") for part in relative.parts)):
            stat = file.stat()
            files.append((str(relative), stat.st_size, stat.st_mtime_ns))
    return files
