"""One Trainer validates, fits and validates again under FSDP (a DAPT run: `stage.validate_before`,
then the validation before model/ is written), on two gloo ranks with FSDP on the CPU."""

import os
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.cpu_fsdp import allow_fsdp_on_cpu, fork_two_ranks
from lightning.pytorch.strategies import FSDPStrategy
from torch.utils.data import DataLoader
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from chipadapt.models.hf_folder import empty_causal_lm, load_causal_lm
from chipadapt.scaleout.save import full_model_state
from chipadapt.scaleout.whole_checkpoints import WholeCheckpointFSDP

LR = 0.5
STEPS = 2
PER_RANK = 2  # sequences in a rank's batch


def sequences(count: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 100, (count, 12), generator=torch.Generator().manual_seed(seed))


TRAIN, VAL = sequences(2 * PER_RANK * STEPS, 1), sequences(2 * PER_RANK, 2)


class LanguageModel(L.LightningModule):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=batch, labels=batch).loss

    def training_step(self, batch, batch_idx):
        return self.loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss(batch), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)

    # Rank r reads the sequences r, r+2, ... in order (the Trainer adds no sampler, which would shuffle).
    def train_dataloader(self):
        return DataLoader(TRAIN[self.global_rank :: 2], batch_size=PER_RANK)

    def val_dataloader(self):
        return DataLoader(VAL[self.global_rank :: 2], batch_size=PER_RANK)


class FSDPOnCPU(WholeCheckpointFSDP):
    def setup_environment(self) -> None:
        FSDPStrategy.setup_environment(self)  # not ours, which refuses the CPU with one line


def validate_fit_validate(rank: int, port: int, folder: str, results: str) -> None:
    allow_fsdp_on_cpu()
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    # trainer=fsdp's settings: each layer a unit and checkpointed, the weights read on rank 0 alone.
    strategy = FSDPOnCPU(
        auto_wrap_policy={LlamaDecoderLayer},
        activation_checkpointing_policy={LlamaDecoderLayer},
        load_on_rank0=True,
        timeout=timedelta(seconds=60),
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        precision="32-true",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    module = LanguageModel((load_causal_lm if rank == 0 else empty_causal_lm)(Path(folder), "float32", "sdpa"))
    losses, roots = [], []
    for fit in (False, True, False):  # stage.validate_before, the training, the validation after it
        if fit:
            trainer.fit(module)
        else:
            trainer.validate(module, verbose=False)
            losses.append(float(trainer.callback_metrics["val/loss"]))
        roots.append(trainer.strategy.model)
    root = roots[0]
    record = {
        "losses": losses,
        "one root": all(r is root for r in roots) and isinstance(root, FSDP) and root.module is module,
        "units": sum(isinstance(m, FSDP) for m in root.modules()),
        "checkpointed": sum(isinstance(m, CheckpointWrapper) for m in root.modules()),
        "state": full_model_state(trainer, module),  # rank 0's; None elsewhere (rank0_only)
    }
    torch.save(record, Path(results) / f"{rank}.pt")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from helpers.models import tiny_model_copy

    return tiny_model_copy(tmp_path_factory.mktemp("second_pass"))


def test_one_trainer_validates_fits_and_validates_the_same_sharded_model(tiny, tmp_path):
    fork_two_ranks(validate_fit_validate, str(tiny), str(tmp_path))

    # The same training in one process: FSDP averages the two ranks' gradients, each of half the batch.
    model = load_causal_lm(tiny, "float32", "sdpa")
    with torch.no_grad():
        before = float(model(input_ids=VAL, labels=VAL).loss)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        batch = TRAIN[step * 2 * PER_RANK : (step + 1) * 2 * PER_RANK]  # both ranks' batches of the step
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        after = float(model(input_ids=VAL, labels=VAL).loss)
    assert after < before - 0.01  # it trained: the comparison below can tell the model before from after

    for rank in (0, 1):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert got["one root"], rank  # trainer.strategy.model: one FSDP root for all three
        assert got["units"] == 3 and got["checkpointed"] == 2, rank  # wrapped and checkpointed once
        assert got["losses"] == pytest.approx([before, after], rel=1e-5), rank
    state = torch.load(tmp_path / "0.pt")["state"]
    expected = model.state_dict()
    assert sorted(state) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(state[name], tensor, msg=name)
