"""FSDP and DeepSpeed strategies whose folder checkpoints are replaced whole, never in place.

Lightning's sharded FSDP save (2.6) and DeepSpeed's engine write every rank's part straight into
`last.ckpt/`, over the previous checkpoint's files (DeepSpeed's tag is always `checkpoint`). A job
preempted during a save, the usual way a cluster run ends, could leave nothing to resume from. Here
every rank writes into `.last.ckpt.partial/` and, once all have finished, rank 0 swaps it in
(io/folder_swap.py). The disk holds two checkpoints during a save. FSDP's `state_dict_type: full`
is one file, written by io/checkpoint_io.py.
"""

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.io.disk_full import disk_full_error


class WholeFolderSaves:
    """For a Lightning strategy whose `save_checkpoint` writes one folder from every rank."""

    def writes_folder(self) -> bool:
        return True

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        if not self.writes_folder() or storage_options is not None or "://" in str(filepath):
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        partial = folder_swap.partial_path(path)
        # Rank 0 alone touches the folders. The disk is one all ranks share: FSDP writes meta.pt and
        # DeepSpeed `latest` on rank 0 only, so a node's own disk never holds a checkpoint to resume.
        if self.global_rank == 0:
            folder_swap.prepare(path)
        self.barrier("chipadapt.checkpoint.prepared")
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
        except BaseException as err:
            if self.global_rank == 0:
                folder_swap.discard(partial)  # the previous checkpoint is untouched; free the space
            full = disk_full_error(err)
            if full is not None and not full.filename:
                raise OSError(full.errno, os.strerror(full.errno), str(path)) from err
            raise
        self.barrier("chipadapt.checkpoint.written")
        if self.global_rank == 0:
            folder_swap.swap_in(path)
        self.barrier("chipadapt.checkpoint.swapped")


class WholeCheckpointFSDP(WholeFolderSaves, FSDPStrategy):
    def writes_folder(self) -> bool:
        return self._state_dict_type == "sharded"

    def setup_environment(self) -> None:
        # Lightning checks this for its own class only; torch's FSDP would fail later with a traceback.
        if self.root_device.type != "cuda":
            raise ChipadaptError("trainer=fsdp: FSDP needs GPUs (trainer.accelerator=gpu); on CPU use trainer=ddp")
        super().setup_environment()


class WholeCheckpointDeepSpeed(WholeFolderSaves, DeepSpeedStrategy):
    pass
