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

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.io.disk_full import disk_full_error
from chipadapt.scaleout.adapter_units import AdapterUnits
from chipadapt.scaleout.kept_root import KeepsFSDPRoot
from chipadapt.scaleout.rank0_load import LoadOnRank0


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
        failure: Exception | None = None
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
        except Exception as err:
            failure = err
        except BaseException:  # interrupted: no collective call may follow; the previous checkpoint is kept
            if self.global_rank == 0:
                folder_swap.discard(partial)
            raise
        # Every rank learns whether all wrote their part. A rank that failed alone (rank 0's meta.pt on a
        # full disk, one node's write error) would otherwise leave the others at the next barrier until
        # the process group's timeout, by default half an hour of a cluster allocation.
        if not all_ranks_agree(failure is None):
            if self.global_rank == 0:
                folder_swap.discard(partial)  # the previous checkpoint is untouched; free the space
            if failure is None:
                raise CheckpointNotWritten(
                    f"{path}: not saved, another rank failed to write its part (its own error says why); "
                    "the previous checkpoint is kept"
                )
            full = disk_full_error(failure)
            if full is not None and not full.filename:
                raise OSError(full.errno, os.strerror(full.errno), str(path)) from failure
            raise failure
        if self.global_rank == 0:
            folder_swap.swap_in(path, remove_old=False)
        self.barrier("chipadapt.checkpoint.swapped")
        if self.global_rank == 0:
            # After the barrier: the other ranks go on while the checkpoint replaced is removed.
            folder_swap.discard(folder_swap.old_path(path))


def all_ranks_agree(decision: bool) -> bool:
    """True on every rank when it is True on all (itself alone without a process group). Not the
    strategy's `reduce_boolean_decision`, which needs `parallel_devices`; NCCL reduces CUDA tensors only."""
    if not (dist.is_available() and dist.is_initialized()):
        return decision
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = torch.tensor([0 if decision else 1], device=device)
    dist.all_reduce(flag)
    return int(flag.item()) == 0


class CheckpointNotWritten(RuntimeError):
    """Raised on the ranks whose own part was written when another rank's failed."""


class WholeCheckpointFSDP(WholeFolderSaves, KeepsFSDPRoot, AdapterUnits, LoadOnRank0, FSDPStrategy):
    """Also reads the weights on rank 0 alone when asked (`load_on_rank0`, scaleout/rank0_load.py),
    gives one Trainer's next fit or validate the same FSDP root (scaleout/kept_root.py), and shards
    LoRA's adapters apart from its frozen base (scaleout/adapter_units.py)."""

    def writes_folder(self) -> bool:
        return self._state_dict_type == "sharded"

    def setup_environment(self) -> None:
        # Lightning checks this for its own class only; torch's FSDP would fail later with a traceback.
        if self.root_device.type != "cuda":
            raise ChipadaptError("trainer=fsdp: FSDP needs GPUs (trainer.accelerator=gpu); on CPU use trainer=ddp")
        super().setup_environment()


class WholeCheckpointDeepSpeed(WholeFolderSaves, DeepSpeedStrategy):
    pass
