"""A full disk (or an exhausted quota) told in one line: which file, how much is free, what is kept.

Training, merging and evaluation write large files; when the filesystem fills up, the traceback
runs to dozens of lines of Lightning, fsspec and shutil frames, and the manifest's own update then
fails with a second one on top. What a user needs is the file that could not be written and the
free space there; every writer here replaces its output only when complete (io/atomic.py,
io/checkpoint_io.py), so the last complete checkpoint and outputs are still in place.
"""

import errno
import os
import shutil
from pathlib import Path

from chipadapt.errors import ChipadaptError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
# Writers outside Python's file objects raise their own error types with the OS error's text in them:
# safetensors (Rust, under save_pretrained) "... (os error 28)", faiss "write error ... (No space left on
# device)". Our own ChipadaptError can quote a user's file, whatever it says: never taken for these.
TEXTS = {
    errno.ENOSPC: (f"(os error {errno.ENOSPC})", os.strerror(errno.ENOSPC)),
    errno.EDQUOT: (f"(os error {errno.EDQUOT})", os.strerror(errno.EDQUOT)),
}


def disk_full_error(err: BaseException | None) -> OSError | None:
    """The out-of-space OSError behind `err` (itself, the exception it was raised from or during, or a
    failure a distributed checkpoint save collected from its ranks)."""
    seen = set()
    while err is not None and id(err) not in seen and not isinstance(err, ChipadaptError):
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return err
        if not isinstance(err, OSError):
            for code, texts in TEXTS.items():
                if any(text in str(err) for text in texts):
                    return OSError(code, os.strerror(code))
        failures = getattr(err, "failures", None)  # torch.distributed.checkpoint's CheckpointException
        if isinstance(failures, dict):
            for failure in failures.values():
                found = disk_full_error(
                    getattr(failure, "exc", failure) if isinstance(failure, BaseException) else None
                )
                if found is not None:
                    return found
        err = err.__cause__ or err.__context__
    return None


def first_error(err: BaseException) -> OSError:
    """The out-of-space error that names a file, the earliest such in the chain (the write that failed
    first); without one, the outermost."""
    found = disk_full_error(err)
    named = found if found.filename else None
    while found is not None:
        if found.filename:
            named = found
        found = disk_full_error(found.__cause__ or found.__context__)
    return named or disk_full_error(err)


def free_space(path: str | None) -> str:
    """'12 MB free' on the filesystem of `path` (its nearest existing folder), or '' when unknown."""
    if not path:
        return ""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"{free / 1e6:,.0f} MB free there"


def disk_full_message(err: BaseException) -> str:
    found = first_error(err)
    target = found.filename2 or found.filename
    what = "quota exceeded" if found.errno == errno.EDQUOT else "no space left on device"
    where = f" writing {target}" if target else ""
    free = free_space(str(target) if target else None)
    return (
        f"{what}{where}{f' ({free})' if free else ''}; complete outputs and the last checkpoint are kept: "
        "free some space and rerun with the same hydra.run.dir to resume"
    )
