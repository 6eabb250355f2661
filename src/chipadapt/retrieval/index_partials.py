"""The parts a killed dense-index build left (`<index_dir>/<encoder>/.<entry>.partial.tmp/`, retrievers.py):
kept so that a rerun over the same passages and encoder resumes them, and useless once the passages or the
encoder changed, since no build will ever have their fingerprint again. A build that publishes its own
index names the others and removes those no process is building: only folders of exactly the layout
the dense index writer makes (a fingerprint stamp and `part-*.npy` files), nothing else in the folder."""

import fcntl
import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PARTIAL_NAME = re.compile(r"^\.[0-9a-f]{16}\.partial\.tmp$")
PART_FILE = re.compile(r"^part-\d{9}\.npy(\.tmp)?$")


def remove_stale_partials(encoder_dir: Path, current: Path, fingerprint: dict, started: float) -> list[str]:
    """Remove the partial builds in `encoder_dir` other than `current` that are ours, stamped with another
    fingerprint than `fingerprint`, last written before `started` (this build's start), and held by no
    build lock; each one is logged with its size. Returns the names removed."""
    removed = []
    for folder in sorted(encoder_dir.iterdir()):
        if folder == current or not PARTIAL_NAME.match(folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        size = _our_partial_size(folder, fingerprint)
        if size is None:
            continue
        newest = max((f.stat().st_mtime for f in folder.iterdir()), default=folder.stat().st_mtime)
        if newest >= started:
            continue  # written while this build ran: another process's build in progress
        entry = folder.name[1:].removesuffix(".partial.tmp")
        if not _free(encoder_dir / f".{entry}.build.lock", lambda f=folder: shutil.rmtree(f)):
            log.info("dense index: %s (%.1f MB) is being built by another process: left", folder, size / 1e6)
            continue
        log.warning(
            "dense index: removed %s (%.1f MB), the parts of a build cut off over other passages or another "
            "encoder state, which no build resumes",
            folder,
            size / 1e6,
        )
        removed.append(folder.name)
    return removed


def _our_partial_size(folder: Path, fingerprint: dict) -> int | None:
    """The bytes of `folder` when it holds only what the dense index writer puts in a partial build (a stamp
    of a fingerprint with this one's keys, other than this one, and part files), else None."""
    stamp, size = folder / "index.json", 0
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or set(recorded) != set(fingerprint) or recorded == fingerprint:
        return None
    for f in folder.iterdir():
        if f.is_symlink() or not f.is_file() or not (f.name == "index.json" or PART_FILE.match(f.name)):
            return None
        size += f.stat().st_size
    return size


def _free(lock_file: Path, action) -> bool:
    """Run `action` under the build lock of the entry (retrievers.py takes it for every build) when no
    process holds it: True when it ran. No lock file: no build ever began there since it was made."""
    if not lock_file.exists():
        action()
        return True
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a build, or a filesystem without flock: leave it
            return False
        try:
            action()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)
