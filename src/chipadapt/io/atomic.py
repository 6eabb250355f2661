"""Atomic outputs: write to a temporary sibling, rename only when complete.

A crash mid-write then never leaves a file or folder that looks finished. The temporary carries the
writer's pid and machine (`.<name>.<pid>-<host>.<random>.tmp`, io/outputs.py `temporary_prefix`): what a
killed writer left is removed by the next process's first write to the same file (`left_by_dead_writer`),
never one that a live process, here or on another machine sharing the disk, is still writing.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chipadapt.io import strict_json
from chipadapt.io.outputs import current_umask, publish_folder, remove_stale_temporaries, temporary_prefix


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # a write killed outright (SIGKILL) left its temporary
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from a group
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, strict_json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def atomic_file(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest` for a writer that wants a file name (savefig, copyfile);
    it replaces `dest` when the block ends without error and is removed otherwise. The name ends in
    .tmp, not in `dest`'s suffix: a writer that picks its format by the name is told it (format="png")."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=temporary_prefix(dest), suffix=".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())  # kept by a writer that opens the name again
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_directory(dest: str | os.PathLike, command: str = "chipadapt", key: str | None = None):
    """Yield a temporary folder beside `dest`; on success it replaces `dest`, on failure it is removed.
    Only a folder that `command` published before is ever replaced (see io/outputs.py). `key`: the
    setting that names `dest`, for the one-line error where no folder can be made there."""
    return publish_folder(dest, command, key)
