"""Whether a folder can be made (or written into) where the user named it, told before any work.

A run folder, an output or a cache entry named under a regular file (`out=notes.txt/run`), or in a
folder that takes no new entries (read-only, immutable, another user's), fails at the first mkdir:
inside Hydra, before any of our code runs, or after minutes of work, as a traceback. Checked first,
it is one line naming the setting. A full disk is not this: it is told where it happens, as such
(io/disk_full.py)."""

import errno
import os
import tempfile
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.disk_full import disk_full_error

PROBE_PREFIX = ".chipadapt-probe."
# What an mkdir meets where the place is wrong: a file in the way, no permission, a read-only mount.
PLACE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR}


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def cannot_create(folder: str | os.PathLike) -> str | None:
    """Why `folder` cannot be created or written into (`/a/notes.txt is not a folder`, `/a/ro: Operation not
    permitted`), or None when it can, or when the only obstacle is a full disk. An empty folder is made
    and removed again in the folder or its nearest existing ancestor: permission bits do not tell an
    immutable folder or a read-only mount apart (`os.access` says yes to root)."""
    folder = Path(folder).expanduser()
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return "it exists and is not a folder" if existing == folder else f"{existing} is not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=PROBE_PREFIX))
    except OSError as err:
        if disk_full_error(err) is not None:
            return None
        return f"{err.strerror or err}" if existing == folder else f"{existing}: {err.strerror or err}"
    return None


def place_error(folder: str | os.PathLike, err: OSError, key: str | None = None) -> ChipadaptError | None:
    """`err`, raised making `folder` or a temporary folder beside it, as the user's error when the place
    explains it (a file in the way, a folder that takes no new entries); None for anything else, a full
    disk included (told as such, io/disk_full.py)."""
    if err.errno not in PLACE_ERRORS:
        return None
    reason = cannot_create(folder) or f"{err.filename or folder}: {err.strerror or err}"
    return ChipadaptError(creation_message(folder, key, reason))


def creation_message(folder: str | os.PathLike, key: str | None, reason: str) -> str:
    verb = "cannot write into" if Path(folder).expanduser().is_dir() else "cannot create"
    return f"{f'{key}: ' if key else ''}{verb} {folder}: {reason}"
