"""The key that tags redacted paths (`docs/<email-1a2b3c4d>_notes.md`): one per machine, in the cache.

A tag keeps two people's `docs/<email>_notes.md` apart (a path is a document's id in deduplication).
Unkeyed, the tag of a guessable address could be found by hashing candidates; keyed at random per run,
every rerun of the same curation wrote other paths. Kept in `$CHIPADAPT_CACHE/curation/redaction.key`,
readable by its owner only and never written into an output: reruns on one machine are identical, and
the corpus alone does not lead back to an address."""

import errno
import fcntl
import os
import time
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.cache_root import cache_root

KEY_BYTES = 16
# How long a caller waits for a key file of the wrong length to be replaced by the caller that wrote it
# (only a file left by an older chipadapt, which wrote the key in place, can be short for a moment).
WAIT_SECONDS = 2.0
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def redaction_key(folder: Path | None = None) -> bytes:
    """This machine's key, made on first use (two curations starting together agree on one). An unusable
    cache (a file where the folder should be, a read-only or foreign folder) is one error line."""
    path = (folder or cache_root() / "curation") / "redaction.key"
    try:
        return _kept_key(path)
    except OSError as err:
        raise ChipadaptError(
            f"data.curate.redact: cannot keep the redaction key in {path}: {err.strerror or err}; "
            "set CHIPADAPT_CACHE to a writable folder"
        ) from None


def _kept_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            if path.exists():  # the usual case: read, nothing written
                return _existing_key(path)
            return path.read_bytes() if _publish_new_key(path) else _existing_key(path)
        except _NotYetWhole:
            if time.monotonic() > deadline:
                return _replace_short_key(path)
            time.sleep(0.05)


class _NotYetWhole(Exception):
    """The key file there is not KEY_BYTES long."""


def _new_key_file(path: Path) -> Path:
    """A new key in a temporary file beside `path` (same folder, so it can be linked or renamed there)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(KEY_BYTES))
        out.flush()
        os.fsync(out.fileno())
    return tmp


def _publish_new_key(path: Path) -> bool:
    """Link a whole new key into place, so no caller ever reads a part of one (a file created empty, then
    written, let a second caller read b"" as its key, or unlink it). False where a key was there first:
    every caller then uses that one."""
    tmp = _new_key_file(path)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in NO_HARD_LINKS:
            raise
        # A filesystem without hard links (some FUSE and SMB mounts): created in place, written at once; a
        # caller that reads it short waits (_NotYetWhole) rather than taking a part of it.
        return _create_in_place(path)
    finally:
        tmp.unlink(missing_ok=True)


def _create_in_place(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(KEY_BYTES))
    return True


def _existing_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise _NotYetWhole
    return key


def _replace_short_key(path: Path) -> bytes:
    """A key file still of the wrong length after WAIT_SECONDS: cut short by a crash of an older chipadapt
    (which wrote the key in place), never made so by this one. The runs that read it never finished an
    output keyed by it, so a new key replaces it. One caller at a time (a lock beside it), and each looks
    again first: two callers that found it short agree on the one key the first wrote."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        tmp = _new_key_file(path)
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_bytes()
