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

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
# Writers in Rust (safetensors' save_file, which save_pretrained calls) raise their own error type with
# the OS error's text in it: "I/O error: No space left on device (os error 28)".
RUST_TEXT = {errno.ENOSPC: f"(os error {errno.ENOSPC})", errno.EDQUOT: f"(os error {errno.EDQUOT})"}


def disk_full_error(err: BaseException | None) -> OSError | None:
    """The out-of-space OSError behind `err` (itself, or the exception it was raised from or during)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return err
        for code, text in RUST_TEXT.items():
            if not isinstance(err, OSError) and text in str(err):
                return OSError(code, os.strerror(code))
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
