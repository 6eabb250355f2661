"""Lightning checkpoints written beside their final name, so a crash never leaves half a `last.ckpt`.

Lightning's own save (2.6, `_atomic_save`) writes the checkpoint to the system temp folder and then
moves it into the run folder. Where the two are different filesystems (a node-local /tmp and a run
folder on Lustre or NFS, a run folder on another disk) that move is a copy: a job preempted during
it, or a disk that fills up, leaves a truncated `last.ckpt` in place of the previous good one, and
the rerun has nothing to resume from. Here the checkpoint is written to a hidden temporary file in
its own folder, flushed to disk, and renamed over the old one: the old checkpoint stays whole until
the new one is. Remote URLs (`s3://...`) keep Lightning's fsspec path.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from chipadapt.io.disk_full import disk_full_error
from chipadapt.io.outputs import current_umask, remove_every_temporary, temporary_prefix


class SameFolderCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A save killed outright (SIGKILL) left a full-size one, maybe on another node before a requeue. Any
        # host's and an earlier version's go: Lightning saves on rank 0 alone, the process that holds the run
        # folder's lock (io/lock.py), so no other writer of this checkpoint can be alive.
        remove_every_temporary(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the checkpoint from a group
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            Path(tmp).unlink(missing_ok=True)
            full = disk_full_error(err)
            if full is not None and not full.filename:  # torch's writer says "unexpected pos"; flush names nothing
                raise OSError(full.errno, os.strerror(full.errno), str(path)) from err
            raise


def use_same_folder_checkpoints(trainer) -> None:
    """Replace the strategy's default checkpoint writer. Strategies that save their own way (DeepSpeed,
    FSDP's sharded checkpoints, a user's own CheckpointIO plugin) are left as they are."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = SameFolderCheckpointIO()
