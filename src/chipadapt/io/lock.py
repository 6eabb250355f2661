"""Exclusive locks: one process per run folder, and one builder per cache entry.

`flock` locks die with their process, so a lock left by a killed run never blocks the rerun; the
pid and command written into the lock file only serve to name the holder in the error.

A run folder in use is an error (two runs writing one folder would mix their outputs). A cache
entry being built is not: the jobs of a sweep or a SLURM array that start together all need the
same converted model, tokenizer build or token cache, and each would otherwise build it again (the
augmented tokenizer takes 40 minutes on a CPU) and replace the others' copy while they read it. The
later ones wait for the first and then find the entry complete.
"""

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.command_line import launch_command
from chipadapt.io.creatable import place_error
from chipadapt.io.launch_ranks import other_process_of_a_launch

LOCK_NAME = ".chipadapt.lock"
log = logging.getLogger(__name__)
# flock is not offered by every shared filesystem (Lustre without the flock mount option): there a
# folder or cache entry goes unlocked, with a warning, as before the locks existed.
_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
# How long a run folder's lock is tried again while its holder is not known to be a live process here: a
# reader's probe (io/lock_probe, which a search makes of its trials' folders as a requeued attempt starts) holds
# it a moment, and names no pid, or the pid of the attempt before, killed (SIGKILL leaves its record); so does a
# run between taking it and writing its pid. A live process of this host named in it is refused at once.
UNKNOWN_HOLDER_PATIENCE_S = 0.5
_RETRY_EVERY_S = 0.02


def is_secondary_rank() -> bool:
    """One of several processes a launcher started, not the first: it shares rank 0's folder and leaves what is
    said and written once to rank 0. A rank variable alone does not make one (io/launch_ranks): a cluster may set
    NODE_RANK or SLURM_PROCID for a process that runs alone."""
    return other_process_of_a_launch()


@contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    folder = Path(folder)
    if is_secondary_rank():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)

    def in_use(holder: str) -> None:
        raise ChipadaptError(
            f"{folder}: run folder in use by {holder}; wait for it to end or choose another hydra.run.dir"
        )

    with _exclusive(
        folder / LOCK_NAME,
        in_use,
        f"{folder}: this filesystem has no flock; the run folder is not locked",
        UNKNOWN_HOLDER_PATIENCE_S,
    ):
        yield


@contextmanager
def cache_entry_lock(entry: str | os.PathLike, key: str | None = None) -> Iterator[None]:
    """Hold the build of cache entry `entry` (a folder, not yet created) for this process; another
    process building the same entry waits here. Check again inside the block whether the entry is
    complete: it may have been built while this process waited. The lock file is a hidden sibling,
    `.<name>.build.lock`, kept for the next builder (removing a lock file others may hold is racy).
    Not re-entrant: two open files conflict under flock even within one process. `key`: the setting
    that names the cache (`tokenizer.adapt.cache_dir`), for the one-line error where it cannot be made."""
    entry = Path(entry).expanduser()

    def building(holder: str) -> None:
        log.info("waiting for %s, which is building %s ...", holder, entry)

    unlocked = (
        f"{entry.parent}: this filesystem has no flock; {entry.name} is built without a lock (jobs that start "
        "together each build it, and the last one's copy replaces the others')"
    )
    with ExitStack() as held:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(_exclusive(entry.parent / f".{entry.name}.build.lock", building, unlocked))
        except OSError as err:  # a file where the cache folder should be, a folder that takes no new entries
            if (refused := place_error(entry.parent, err, key)) is not None:
                raise refused from err
            raise
        yield


@contextmanager
def _exclusive(path: Path, on_busy: Callable[[str], None], unsupported: str, patience_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive flock on `path` while the block runs. When another process holds it,
    `on_busy(holder)` raises (give up) or returns (wait for it), after trying again for up to `patience_s`
    unless the file names a live process of this host; where the filesystem has no flock, warn `unsupported`
    and run unlocked."""
    fd, writable = _open_lock_file(path)
    try:
        locked = _flock_unless_held_by_a_live_process(fd, path, patience_s)
        if locked is None:  # outside an except clause: an error raised by on_busy carries no BlockingIOError context
            on_busy(_holder(path))
            locked = _flock(fd, blocking=True)
        if not locked:
            log.warning(unsupported)
            yield
            return
        with _holding(fd, writable):
            yield
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """(descriptor, writable). Created readable and writable by all the umask allows, so a cache shared
    by a group works; a lock file another user made is opened read-only (flock works on it too)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError as refused:
        try:
            return os.open(path, os.O_RDONLY), False
        except FileNotFoundError:  # none to share: the folder takes no new file, which is what to tell
            raise refused from None


def _flock(fd: int, blocking: bool) -> bool:
    """Take the exclusive lock: True, or False on a filesystem without flock. BlockingIOError when
    another process holds it and `blocking` is false."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        raise
    except OSError as err:
        if err.errno not in _UNSUPPORTED:
            raise
        return False
    return True


@contextmanager
def _holding(fd: int, writable: bool) -> Iterator[None]:
    """Name this process in the locked file while the block runs, then release the lock."""
    if writable:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(launch_command())}).encode())
    try:
        yield
    finally:
        if writable:
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)


def _flock_unless_held_by_a_live_process(fd: int, path: Path, patience_s: float) -> bool | None:
    """_flock without waiting: True, False (no flock), or None where another holds it; tried again every
    _RETRY_EVERY_S for up to `patience_s` while the file names no live process of this host."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return _flock(fd, blocking=False)
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline or _names_a_live_process(path):
            return None
        time.sleep(_RETRY_EVERY_S)


def _names_a_live_process(path: Path) -> bool:
    """The pid in the lock file is a live process of this host (one of another host, sharing the folder over
    the network, or a killed holder's, is not known to be)."""
    pid = _holder_record(path).get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _holder_record(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _holder(path: Path) -> str:
    holder = _holder_record(path)
    return f"pid {holder.get('pid', '?')} ({holder.get('command', 'another chipadapt command')})"
