"""Under DDP the contrastive loss sees every process's passages as negatives (Tevatron's gathered loss)."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _rank_loss(rank: int, world: int, store: str, q: torch.Tensor, p: torch.Tensor, out: dict) -> None:
    # A file store, not a TCP port: nothing else on the host (another job on torch's 29500) can take it.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        from chipadapt.modules.bi_encoder import BiEncoderModule

        module = BiEncoderModule(encoder=None, n_passages=2, temperature=0.05, optim=None, gradient_checkpointing=False)
        module.setup("fit")
        n = q.shape[0] // world
        local_q, local_p = q[rank * n : (rank + 1) * n], p[rank * 2 * n : (rank + 1) * 2 * n]
        out[rank] = float(module.loss_fn(local_q / 0.05, local_p))
    finally:
        dist.destroy_process_group()


def test_two_process_loss_equals_the_single_process_loss_over_the_whole_batch(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    from tevatron.loss import SimpleContrastiveLoss

    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(8, 8), dim=-1)
    single = float(SimpleContrastiveLoss(n_target=2)(q / 0.05, p))
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_rank_loss, args=(2, str(tmp_path / "store"), q, p, out), nprocs=2, join=True)
    # Each process scores its queries against all 8 passages and scales by the world size, so that
    # DDP's gradient average comes out as a sum: the mean of the two losses is 2 x the full-batch loss.
    assert (out[0] + out[1]) / 2 == pytest.approx(2 * single, rel=1e-5)
