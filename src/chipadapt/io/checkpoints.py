"""A Lightning checkpoint that a rerun would resume from, checked before training starts."""

import zipfile
from pathlib import Path

from chipadapt.errors import ChipadaptError

# Up to this size every member's CRC is verified too (a second or two); larger checkpoints are
# checked for a complete zip directory only, which a truncated write never has.
FULL_CHECK_BYTES = 4 << 30


def check_checkpoint(path: Path) -> None:
    hint = "resume=false starts the run over (the checkpoint is left where it is)"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise ChipadaptError(f"{path}: not a PyTorch checkpoint; {hint}")
            if path.stat().st_size <= FULL_CHECK_BYTES and archive.testzip() is not None:
                raise ChipadaptError(f"{path}: checkpoint is damaged (checksum mismatch); {hint}")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ChipadaptError(f"{path}: checkpoint cannot be read ({err}); {hint}") from None
