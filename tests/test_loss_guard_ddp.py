"""The loss-spike guard decides once per optimizer step, on the loss of the whole step (every
micro-batch of every process), so every process takes the same decision; train/loss is that loss."""

import csv

import pytest
import torch
from conftest import compose
from helpers.ddp_runs import one_and_two_processes


def logged(run_dir, key: str) -> dict[int, float]:
    with open(run_dir / "metrics.csv") as handle:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(handle) if r.get(key)}


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.integration
def test_a_spike_seen_by_one_process_skips_the_step_on_every_process(tmp_path, tiny_overrides):
    """max_ratio=1.0 skips any step whose loss is above the running mean: some steps are skipped, and
    before the fix the first rank to see one crashed the run (training_step returned None there only)."""
    common = [
        *tiny_overrides,
        "data.global_batch_size=4",
        "data.micro_batch_size=2",
        "trainer.max_steps=6",
        "stage.validate_before=false",
        "optim.lr=1e-3",
        "callbacks.checkpoint=null",
        "loss_guard.max_ratio=1.0",
        "loss_guard.warmup_steps=1",
    ]
    _, ddp = one_and_two_processes(common, tmp_path)
    assert "Traceback" not in ddp.stderr
    # The same global batches give the same step losses, the same verdicts and the same weights.
    one_loss, two_loss = logged(tmp_path / "one", "train/loss"), logged(tmp_path / "two", "train/loss")
    assert sorted(one_loss) == sorted(two_loss) and one_loss
    for step in one_loss:
        assert two_loss[step] == pytest.approx(one_loss[step], rel=1e-5), step
    skipped_one, skipped_two = (
        logged(tmp_path / "one", "train/skipped_steps"),
        logged(tmp_path / "two", "train/skipped_steps"),
    )
    assert skipped_one and skipped_one == skipped_two
    one, two = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    for name in one:
        assert torch.allclose(one[name], two[name], atol=2e-5), name


def test_a_spike_in_one_micro_batch_skips_the_whole_accumulated_step(tmp_path, tiny_overrides, monkeypatch):
    """Four micro-batches a step; a NaN in the second of step 0: step 0 makes no update at all (the
    optimizer stepped on the three others' gradients before the fix) and counts as one skipped step."""
    from chipadapt.modules.causal_lm import CausalLMModule
    from chipadapt.pipeline import train

    calls = {"n": 0}
    original = CausalLMModule.forward
    seen = {}

    def spiking(self, batch):
        out = original(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 2:
                out.loss = out.loss * float("nan")
        return out

    def record(self):
        optimizer = self.trainer.optimizers[0]
        seen["updates"] = {int(s["step"]) for s in optimizer.state.values()}
        seen["skipped"] = self.loss_guard.skipped

    monkeypatch.setattr(CausalLMModule, "forward", spiking)
    monkeypatch.setattr(CausalLMModule, "on_train_end", record, raising=False)
    cfg = compose(
        [
            *tiny_overrides,
            "data.global_batch_size=4",
            "data.micro_batch_size=1",
            "trainer.max_steps=3",
            "stage.validate_before=false",
            "callbacks.checkpoint=null",
        ],
        tmp_path,
    )
    assert train(cfg)["global_step"] == 3
    assert seen == {"updates": {2}, "skipped": 1}
    losses = logged(tmp_path, "train/loss")
    assert sorted(losses) == [1, 2] and all(v == v for v in losses.values())  # no NaN, no entry for step 0
    assert logged(tmp_path, "train/skipped_steps")[0] == 1.0
