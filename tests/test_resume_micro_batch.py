"""A run resumed with another `data.micro_batch_size` (the knob turned after running out of memory),
the global batch unchanged, trains on the same sequences at every optimizer step as a run that was
never interrupted: the same weights, up to the order in which the micro-batches' gradients add up."""

import csv
import logging

import pytest
import torch
from conftest import TINY_FAST, compose
from test_resume_stages import losses, train_here, train_killed, weights

from chipadapt.data.resume_sampler import ResumeSampler
from chipadapt.errors import ChipadaptError
from chipadapt.stages.resume_settings import CHECKPOINT_KEY, check_resume_settings, trajectory_settings


def save(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def test_a_micro_batch_change_warns_when_the_global_batch_holds(tmp_path, caplog):
    recorded = trajectory_settings(compose([*TINY_FAST, "data.micro_batch_size=1"], tmp_path / "run"))
    ckpt = save(tmp_path / "last.ckpt", {CHECKPOINT_KEY: recorded, "global_step": 2})
    with caplog.at_level(logging.WARNING):
        check_resume_settings(ckpt, compose([*TINY_FAST, "data.micro_batch_size=2"], tmp_path / "run"))
    assert "data.micro_batch_size" in caplog.text and "1 -> 2" in caplog.text
    assert "the same sequences at every step" in caplog.text
    # Another global batch is another trajectory: still refused.
    with pytest.raises(ChipadaptError, match=r"global_batch_size.*4 -> 8"):
        check_resume_settings(
            ckpt, compose([*TINY_FAST, "data.micro_batch_size=2", "data.global_batch_size=8"], tmp_path / "run")
        )


def steps_of(micro: int, resumed_at: int = 0) -> list[list[int]]:
    """The sequence indices of each optimizer step one process reads, micro-batches in order."""
    sampler = ResumeSampler(40, global_batch=4, shuffle_seed=7, position=lambda: (resumed_at, 0))
    order = list(sampler)
    return [order[i : i + 4] for i in range(0, len(order), 4)]


def test_the_sampler_gives_each_step_the_same_sequences_at_any_micro_batch():
    # The sampler is cut by the global batch alone; the micro-batch only splits a step's sequences.
    assert steps_of(micro=1) == steps_of(micro=2)
    assert steps_of(micro=1)[3:] == steps_of(micro=2, resumed_at=3)


@pytest.mark.integration
@pytest.mark.parametrize(
    "before, after, kill_at",
    [
        (1, 2, 3),  # memory to spare: fewer, larger micro-batches
        (2, 1, 4),  # out of memory; checkpoint at step 3, an odd one: accumulation 2 -> 4
    ],
)
def test_resumed_with_another_micro_batch_ends_with_the_weights_of_an_uninterrupted_run(
    tmp_path, before, after, kill_at
):
    args = [*TINY_FAST, "trainer.max_steps=5", "stage.validate_before=false", "optim.lr=1e-3"]
    args += ["loss_guard.enabled=false"]
    # Only the killed run is a fresh process (it must die); the others run in this one.
    train_here([*args, f"data.micro_batch_size={before}"], tmp_path / "whole")
    killed = train_killed([*args, f"data.micro_batch_size={before}"], tmp_path / "cut", kill_at)
    assert killed.returncode == -9, killed.stderr[-2000:]
    train_here([*args, f"data.micro_batch_size={after}"], tmp_path / "cut")
    with open(tmp_path / "cut" / "metrics.csv") as handle:  # each step logged once, in order
        logged = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert logged == list(range(5)) and sorted(losses(tmp_path / "whole")) == logged
    one, two = weights(tmp_path / "whole" / "model"), weights(tmp_path / "cut" / "model")
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-6), (name, (one[name] - two[name]).abs().max())


def loop_state(ready: int, completed: int, step: int, accumulation: int | None) -> dict:
    counts = {"ready": ready, "completed": completed, "started": ready, "processed": ready}
    progress = {"total": dict(counts), "current": dict(counts), "is_last_batch": False}
    checkpoint = {"loops": {"fit_loop": {"epoch_loop.batch_progress": progress}}, "global_step": step}
    if accumulation is not None:
        checkpoint["chipadapt_accumulation"] = accumulation
    return checkpoint


def test_lightnings_count_of_micro_batches_follows_the_accumulation():
    from chipadapt.stages.checkpoint_records import recount_micro_batches

    # Saved after step 3 at 2 micro-batches a step (completed trails ready by the batch being ended).
    checkpoint = loop_state(ready=6, completed=5, step=3, accumulation=2)
    recount_micro_batches(checkpoint, 4)
    current = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert current == {"ready": 12, "completed": 11, "started": 12, "processed": 12}
    # A checkpoint from before the accumulation was recorded: read from its steps and micro-batches.
    old = loop_state(ready=12, completed=11, step=3, accumulation=None)
    recount_micro_batches(old, 2)
    assert old["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"] == 6
    same = loop_state(ready=6, completed=5, step=3, accumulation=2)
    recount_micro_batches(same, 2)
    assert same == loop_state(ready=6, completed=5, step=3, accumulation=2)
