"""Folder checkpoints (sharded FSDP, DeepSpeed) replaced whole: a save cut short keeps the last one."""

import pytest
import torch
from conftest import compose

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.io.checkpoints import check_checkpoint
from chipadapt.scaleout.whole_checkpoints import WholeCheckpointFSDP, WholeFolderSaves


def fsdp_sharded():
    # Lightning's own sharded save (torch.distributed.checkpoint) runs in one process without a
    # process group, so the real writer is exercised here without a GPU.
    return WholeCheckpointFSDP(state_dict_type="sharded")


def lightning_checkpoint(value: float) -> dict:
    return {"state_dict": {"w": torch.full((4, 4), value)}, "optimizer_states": [], "global_step": int(value)}


def saved_weight(path) -> torch.Tensor:
    import torch.distributed.checkpoint as dcp

    state = {"model": {"w": torch.zeros(4, 4)}}
    dcp.load(state, checkpoint_id=path)
    return state["model"]["w"]


def hidden_siblings(path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith("."))


def test_a_sharded_save_replaces_the_folder_whole_and_a_failed_one_keeps_the_last(tmp_path, monkeypatch):
    import lightning.pytorch.strategies.fsdp as lightning_fsdp

    strategy, ckpt = fsdp_sharded(), tmp_path / "checkpoints" / "last.ckpt"
    strategy.save_checkpoint(lightning_checkpoint(1.0), ckpt)
    strategy.save_checkpoint(lightning_checkpoint(2.0), ckpt)
    assert (ckpt / "meta.pt").is_file() and torch.equal(saved_weight(ckpt), torch.full((4, 4), 2.0))
    assert torch.load(ckpt / "meta.pt")["global_step"] == 2 and hidden_siblings(ckpt) == []
    check_checkpoint(ckpt)

    real_save = lightning_fsdp._distributed_checkpoint_save

    def preempted(state, path):  # some shards written, then the job is gone
        real_save(state, path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lightning_fsdp, "_distributed_checkpoint_save", preempted)
    with pytest.raises(OSError) as raised:
        strategy.save_checkpoint(lightning_checkpoint(3.0), ckpt)
    assert raised.value.filename == str(ckpt)  # the one-line disk-full report names the checkpoint
    assert torch.equal(saved_weight(ckpt), torch.full((4, 4), 2.0)) and hidden_siblings(ckpt) == []


def test_a_partial_folder_left_by_a_kill_is_replaced_by_the_next_save(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    fsdp_sharded().save_checkpoint(lightning_checkpoint(1.0), ckpt)
    stale = folder_swap.partial_path(ckpt)
    stale.mkdir()
    (stale / "__0_0.distcp").write_bytes(b"half a shard")
    fsdp_sharded().save_checkpoint(lightning_checkpoint(5.0), ckpt)
    assert torch.equal(saved_weight(ckpt), torch.full((4, 4), 5.0)) and hidden_siblings(ckpt) == []


def test_a_swap_cut_between_its_renames_is_put_back_before_resuming(tmp_path):
    from chipadapt.stages.common import resume_checkpoint

    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "last.ckpt"
    fsdp_sharded().save_checkpoint(lightning_checkpoint(1.0), ckpt)
    ckpt.rename(folder_swap.old_path(ckpt))  # the first rename done, the second not
    cfg = compose(["model=tiny"], out)
    assert resume_checkpoint(cfg, out) == str(ckpt)
    assert torch.equal(saved_weight(ckpt), torch.full((4, 4), 1.0)) and hidden_siblings(ckpt) == []

    # The same state met by the next save (a run started over with resume=false) is put back first,
    # so a save that then fails still leaves the previous checkpoint.
    ckpt.rename(folder_swap.old_path(ckpt))
    strategy = fsdp_sharded()
    strategy.save_checkpoint(lightning_checkpoint(2.0), ckpt)
    assert torch.equal(saved_weight(ckpt), torch.full((4, 4), 2.0)) and hidden_siblings(ckpt) == []


def test_a_checkpoint_folder_without_its_metadata_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(b"")
    with pytest.raises(ChipadaptError, match="without meta.pt or latest"):
        check_checkpoint(folder)


class FolderWriter:
    """A strategy that writes its checkpoint as DeepSpeed's engine does: a tag folder and `latest`."""

    def __init__(self, global_rank: int, local_rank: int):
        self.global_rank, self.local_rank, self.barriers = global_rank, local_rank, []

    def broadcast(self, obj):
        return obj

    def barrier(self, name=None):
        self.barriers.append(name)

    def save_checkpoint(self, checkpoint, filepath, storage_options=None):
        (filepath / "checkpoint").mkdir(parents=True, exist_ok=True)
        (filepath / "checkpoint" / f"rank{self.global_rank}.pt").write_text(str(checkpoint["step"]))
        (filepath / "latest").write_text("checkpoint")


class DeepSpeedLike(WholeFolderSaves, FolderWriter):
    pass


def test_every_node_swaps_in_its_own_parts_when_rank_zero_does_not_share_its_disk(tmp_path):
    node0, node1 = tmp_path / "node0" / "last.ckpt", tmp_path / "node1" / "last.ckpt"
    for step in (1, 2):
        DeepSpeedLike(0, 0).save_checkpoint({"step": step}, node0)
        second_node = DeepSpeedLike(8, 0)
        second_node.save_checkpoint({"step": step}, node1)
    assert (node0 / "checkpoint" / "rank0.pt").read_text() == "2" and hidden_siblings(node0) == []
    assert (node1 / "checkpoint" / "rank8.pt").read_text() == "2" and hidden_siblings(node1) == []
    assert second_node.barriers == [
        "chipadapt.checkpoint.prepared",
        "chipadapt.checkpoint.written",
        "chipadapt.checkpoint.swapped",
    ]


def test_fsdp_on_cpu_is_one_line_not_torchs_traceback(tmp_path):
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=fsdp_sharded(), logger=False, enable_checkpointing=False)
    with pytest.raises(ChipadaptError, match="trainer=fsdp: FSDP needs GPUs"):
        trainer.strategy.setup_environment()
