"""Whether a live process holds a run folder's lock (io/lock.py), for readers of other runs' folders.

A job killed with SIGKILL (the OOM killer, `scancel --signal=KILL`, a lost node) leaves its manifest
saying "running"; its flock died with it. So a "running" manifest whose folder lock nobody holds is a
job that stopped without finishing. The probe takes a shared lock and gives it back at once, on a file
opened read-only: it never creates a lock file in a folder it reads."""

import errno
import fcntl
import os
from pathlib import Path

from chipadapt.io.lock import LOCK_NAME

# As in io/lock.py: a filesystem without flock cannot tell.
_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def folder_lock_held(folder: str | os.PathLike) -> bool | None:
    """True where a live process holds `folder`'s run lock, False where none does, None where this cannot
    be told (no lock file: a folder written before the locks, or copied; a filesystem without flock)."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            return None
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
