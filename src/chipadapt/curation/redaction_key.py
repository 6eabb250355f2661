"""The key that tags redacted paths (`docs/<email-1a2b3c4d>_notes.md`): one per machine, in the cache.

A tag keeps two people's `docs/<email>_notes.md` apart (a path is a document's id in deduplication).
Unkeyed, the tag of a guessable address could be found by hashing candidates; keyed at random per run,
every rerun of the same curation wrote other paths. Kept in `$CHIPADAPT_CACHE/curation/redaction.key`,
readable by its owner only and never written into an output: reruns on one machine are identical, and
the corpus alone does not lead back to an address."""

import os
from pathlib import Path

from chipadapt.io.cache_root import cache_root

KEY_BYTES = 16


def redaction_key(folder: Path | None = None) -> bytes:
    """This machine's key, made on first use (two curations starting together agree on one)."""
    path = (folder or cache_root() / "curation") / "redaction.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        # A key file cut short (a crash between create and write): the few runs that read it never
        # finished writing an output keyed by it, so it is made again.
        path.unlink(missing_ok=True)
        return redaction_key(folder)
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(KEY_BYTES))
    return path.read_bytes()
