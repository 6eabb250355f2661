"""A Lightning checkpoint that a rerun would resume from, checked before training starts."""

import zipfile
from pathlib import Path

from chipadapt.errors import ChipadaptError

# Up to this size every member's CRC is verified too (a second or two); larger checkpoints are
# checked for a complete zip directory only, which a truncated write never has.
FULL_CHECK_BYTES = 4 << 30


# What a complete folder checkpoint holds besides its shards: Lightning's non-tensor state (FSDP
# sharded) or DeepSpeed's pointer to its tag folder.
FOLDER_MARKERS = ("meta.pt", "latest")


def check_checkpoint(path: Path) -> None:
    hint = (
        "resume=false starts the run over here (this checkpoint is replaced at its first save: move it away to keep it)"
    )
    if path.is_dir():
        if not any((path / name).is_file() for name in FOLDER_MARKERS):
            raise ChipadaptError(
                f"{path}: a checkpoint folder without {' or '.join(FOLDER_MARKERS)}, so not a complete "
                f"FSDP or DeepSpeed checkpoint; {hint}"
            )
        return
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise ChipadaptError(f"{path}: not a PyTorch checkpoint; {hint}")
            if path.stat().st_size <= FULL_CHECK_BYTES and archive.testzip() is not None:
                raise ChipadaptError(f"{path}: checkpoint is damaged (checksum mismatch); {hint}")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ChipadaptError(f"{path}: checkpoint cannot be read ({err}); {hint}") from None
