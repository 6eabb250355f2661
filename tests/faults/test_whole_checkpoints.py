"""Folder checkpoints (sharded FSDP, DeepSpeed) replaced whole: a save cut short keeps the last one."""

from pathlib import Path

import pytest
import torch
from conftest import compose

from chipadapt.errors import ChipadaptError
from chipadapt.io import folder_swap
from chipadapt.io.checkpoints import check_checkpoint
from chipadapt.scaleout.whole_checkpoints import WholeCheckpointFSDP


def fsdp_sharded():
    # Lightning's own sharded save (torch.distributed.checkpoint) runs in one process without a
    # process group, so the real writer is exercised here without a GPU.
    return WholeCheckpointFSDP(state_dict_type="sharded", load_on_rank0=False)


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
    from chipadapt.stages.resume_decision import resume_checkpoint

    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "last.ckpt"
    fsdp_sharded().save_checkpoint(lightning_checkpoint(1.0), ckpt)
    ckpt.rename(folder_swap.old_path(ckpt))  # the first rename done, the second not
    cfg = compose(["model=tiny"], out)
    assert resume_checkpoint(cfg, out) == str(ckpt)
    assert torch.equal(saved_weight(ckpt), torch.full((4, 4), 1.0)) and hidden_siblings(ckpt) == []

    # Cut after every rank had written the new one: the new one is finished into place.
    fsdp_sharded().save_checkpoint(lightning_checkpoint(2.0), ckpt)
    ckpt.rename(folder_swap.old_path(ckpt))
    fsdp_sharded().save_checkpoint(lightning_checkpoint(3.0), folder_swap.partial_path(ckpt))
    assert resume_checkpoint(cfg, out) == str(ckpt)
    assert torch.equal(saved_weight(ckpt), torch.full((4, 4), 3.0)) and hidden_siblings(ckpt) == []

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


def join_two_ranks(rank: int, port: int, timeout_s: float | None = None) -> WholeCheckpointFSDP:
    """This process as one of two gloo ranks, and the sharded-save strategy it saves with."""
    import os
    from datetime import timedelta

    import torch.distributed as dist
    from lightning.fabric.plugins.environments import LightningEnvironment

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    extra = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}
    dist.init_process_group("gloo", rank=rank, world_size=2, **extra)
    environment = LightningEnvironment()
    environment.set_global_rank(rank)
    environment.set_world_size(2)
    return WholeCheckpointFSDP(state_dict_type="sharded", load_on_rank0=False, cluster_environment=environment)


def save_sharded(strategy: WholeCheckpointFSDP, step: int, root: str) -> None:
    """`w` = arange(16) x step, each rank holding two of its four rows."""
    from torch.distributed.tensor import DeviceMesh, Shard, distribute_tensor

    state = {"w": distribute_tensor(torch.arange(16.0).view(4, 4) * step, DeviceMesh("cpu", [0, 1]), [Shard(0)])}
    strategy.save_checkpoint({"state_dict": state, "optimizer_states": [], "global_step": step}, root)


def spawn_two_ranks(fn, *args) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(fn, args=(port, *args), nprocs=2, join=True)


def save_from_two_ranks(rank: int, port: int, root: str) -> None:
    """One of two gloo ranks of a sharded save: each writes its own half of `w` (torch.distributed.checkpoint)."""
    import torch.distributed as dist

    strategy = join_two_ranks(rank, port)
    try:
        for step in (1, 2):
            save_sharded(strategy, step, root)
            # Rank 1 may only go on once rank 0 has swapped the folder in: the new one in place on both
            # (the one it replaced may still be being removed, as `.last.ckpt.old`).
            listing = sorted(p.name for p in folder_swap.partial_path(Path(root)).parent.iterdir())
            assert "last.ckpt" in listing and ".last.ckpt.partial" not in listing, (rank, listing)
    finally:
        dist.destroy_process_group()


def test_two_ranks_write_their_shards_into_one_folder_that_is_swapped_in_once(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    spawn_two_ranks(save_from_two_ranks, str(ckpt))
    assert sorted(p.name for p in ckpt.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert torch.equal(saved_weight(ckpt), torch.arange(16.0).view(4, 4) * 2)
    assert torch.load(ckpt / "meta.pt")["global_step"] == 2 and hidden_siblings(ckpt) == []


def test_fsdp_on_cpu_is_one_line_not_torchs_traceback(tmp_path):
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=fsdp_sharded(), logger=False, enable_checkpointing=False)
    with pytest.raises(ChipadaptError, match="trainer=fsdp: FSDP needs GPUs"):
        trainer.strategy.setup_environment()


def one_rank_fails_its_save(rank: int, port: int, root: str, results: str) -> None:
    """Two gloo ranks; at the second save rank 1's write fails after the shards went out (a full disk
    on its node, say) while rank 0's succeeds."""
    import lightning.pytorch.strategies.fsdp as lightning_fsdp
    import torch.distributed as dist

    from chipadapt.scaleout.whole_checkpoints import CheckpointNotWritten

    # A short timeout: without the agreement, rank 0 would wait at the next barrier for this long and fail.
    strategy = join_two_ranks(rank, port, timeout_s=60)
    try:
        save_sharded(strategy, 1, root)
        if rank == 1:
            real_save = lightning_fsdp._distributed_checkpoint_save

            def fails_here(state, path):
                real_save(state, path)
                raise OSError(28, "No space left on device")

            lightning_fsdp._distributed_checkpoint_save = fails_here
        try:
            save_sharded(strategy, 2, root)
            outcome = "saved"
        except CheckpointNotWritten as err:
            outcome = f"not written: {err}"
        except OSError as err:
            outcome = f"own error: {err.strerror} {err.filename}"
        Path(results, f"rank{rank}").write_text(outcome)
        if rank == 1:
            lightning_fsdp._distributed_checkpoint_save = real_save
        save_sharded(strategy, 3, root)  # both ranks go on: the next save works
    finally:
        dist.destroy_process_group()


def test_a_save_failing_on_one_rank_stops_every_rank_at_once_and_keeps_the_last(tmp_path):
    ckpt, results = tmp_path / "last.ckpt", tmp_path / "results"
    results.mkdir()
    spawn_two_ranks(one_rank_fails_its_save, str(ckpt), str(results))
    assert (results / "rank0").read_text().startswith(f"not written: {ckpt}: not saved, another rank failed")
    assert (results / "rank1").read_text() == f"own error: No space left on device {ckpt}"
    # The failed save left nothing behind; the one after it replaced step 1's checkpoint.
    assert torch.equal(saved_weight(ckpt), torch.arange(16.0).view(4, 4) * 3) and hidden_siblings(ckpt) == []
