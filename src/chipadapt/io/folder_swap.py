"""A checkpoint folder replaced whole: the new one is written beside it and swapped in by two renames.

Sharded checkpoints (FSDP, DeepSpeed) are folders that every rank writes its part of. Written in
place over the previous checkpoint, a save cut short (a preempted job, a killed process, a full
disk) leaves old and new parts mixed, which resumes into a wrong state or not at all. Here the new
checkpoint is written to `.NAME.partial` beside `NAME`; once complete, `NAME` is moved aside to
`.NAME.old`, the new one is renamed in and the old one removed. At every moment one complete
checkpoint exists: `NAME`, or (cut between the two renames) `.NAME.partial` and `.NAME.old`, of
which `recover` puts the newer in place.
Both hidden names are ours, so removing them deletes nothing a user made. Unlike the temporaries of
io/outputs.py they carry no pid or machine: every rank, on every node, writes into the one partial folder,
and a rerun (on other nodes, as a cluster allocates them) must find what a killed save left to finish or
remove it. So no writer's liveness is judged here, but the run folder's lock (io/lock.py): they are removed
by the next save (`prepare`, in the job that holds the lock) or resume (`recover`). A resume looks before
it takes the lock (pipeline.train checks the checkpoint before anything is written), so `recover` given the
run folder leaves everything as it is while a live process holds its lock: a second command started into a
folder in use would otherwise finish, under the running job, a swap that job is in the middle of (its own
second rename then fails), before the lock refuses it.
"""

import logging
import os
import shutil
from pathlib import Path

from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.io.outputs import readable_as_umask_allows

log = logging.getLogger(__name__)


def partial_path(path: Path) -> Path:
    return path.parent / f".{path.name}.partial"


def old_path(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def discard(path: Path) -> None:
    """Remove a file or folder we wrote, whichever it is (gone already is fine: another node's rank
    sharing the filesystem may have removed it first)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(path: Path, run_folder: Path | None = None) -> bool:
    """Finish a swap that was cut between its two renames (True when it did): `.NAME.partial` is then
    complete (it is renamed only after every rank has written its part) and becomes `NAME`; without it,
    `.NAME.old` is put back. An `.NAME.old` beside a whole `NAME` is a leftover of a finished swap and
    is removed. `run_folder`: nothing is done while a live process (this one too) holds its lock."""
    old, partial = old_path(path), partial_path(path)
    if not (old.exists() or old.is_symlink()):
        return False
    if run_folder is not None and folder_lock_held(run_folder) is True:
        return False
    if path.exists() or path.is_symlink():
        discard(old)
        return False
    try:
        os.replace(partial if partial.exists() else old, path)
    except FileNotFoundError:  # another process sharing the folder finished it first
        return False
    discard(old)
    log.warning("%s: finished its replacement, which was cut off between its two renames", path)
    return True


def prepare(path: Path) -> Path:
    """Before a save into `.NAME.partial`: `NAME` whole again if a swap was cut, and no partial
    folder left by a save that was cut; returns the partial path to write to."""
    recover(path)
    partial = partial_path(path)
    discard(partial)
    return partial


def swap_in(path: Path, remove_old: bool = True) -> None:
    """The complete `.NAME.partial` becomes `NAME`; the folder it replaces is removed after, or left
    as `.NAME.old` for the caller to remove later (`recover` removes it too)."""
    partial, old = partial_path(path), old_path(path)
    readable_as_umask_allows(partial)  # sharded writers may make private files, as safetensors does
    if path.exists() or path.is_symlink():
        discard(old)
        os.replace(path, old)
    os.replace(partial, path)
    if remove_old:
        discard(old)
