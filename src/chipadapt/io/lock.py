"""One process per run folder: an exclusive lock held for the life of the command.

`flock` locks die with their process, so a lock left by a killed run never blocks the rerun; the
pid and command written into the lock file only serve to name the holder in the error."""

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chipadapt.errors import ChipadaptError

LOCK_NAME = ".chipadapt.lock"


def is_secondary_rank() -> bool:
    """A worker process of a distributed run shares rank 0's folder and does not lock it."""
    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(variable, "0")
        if value.isdigit() and int(value) > 0:
            return True
    return False


@contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    folder = Path(folder)
    if is_secondary_rank():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            who = f"pid {holder.get('pid', '?')} ({holder.get('command', 'another chipadapt command')})"
            raise ChipadaptError(
                f"{folder}: run folder in use by {who}; wait for it to end or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)}).encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
