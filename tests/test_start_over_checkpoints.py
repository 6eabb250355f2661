"""A start-over leaves no checkpoint of the run it replaces, and export.py refuses one that is not its run's.

The trial: a 6-step run keeping every step's checkpoint, started over with overwrite=true resume=false as a
4-step run at another lr, kept the old `epoch=1-step=6.ckpt`; `export.py run=RUN step=6` exported the old
run's weights under the new run's manifest. And `overwrite=true optim.lr=1e-4 trainer.max_steps=4` over a
completed 6-step run was refused as "written by a run with other settings" where the README has it start
over."""

from pathlib import Path

import pytest
import torch
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, FINISHED_KEY
from chipadapt.stages.common import discard_checkpoint, resume_checkpoint
from chipadapt.stages.resume_settings import trajectory_settings


def config(tmp_path: Path, *overrides: str):
    return compose([*TINY_FAST, "trainer.max_epochs=-1", *overrides], tmp_path)


def test_a_start_over_discards_every_checkpoint_of_the_earlier_run(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("last.ckpt", "epoch=0-step=2.ckpt", "epoch=1-step=6.ckpt"):
        (folder / name).write_bytes(b"weights")
    (folder / "epoch=1-step=4.ckpt").mkdir()  # a sharded (FSDP) checkpoint is a folder
    (folder / "epoch=1-step=4.ckpt" / "meta.pt").write_bytes(b"meta")
    (folder / "notes.txt").write_text("the user's")
    discard_checkpoint(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def finished_checkpoint(tmp_path: Path, cfg, step: int) -> Path:
    """`last.ckpt` of a completed run of `cfg` at `step`, its model/ published."""
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, CHECKPOINT_KEY: trajectory_settings(cfg), FINISHED_KEY: True}, ckpt)
    (tmp_path / "model").mkdir(exist_ok=True)
    return ckpt


@pytest.mark.parametrize(
    ("overrides", "starts_over"),
    [
        (["trainer.max_steps=4", "optim.lr=1e-4"], True),  # shorter, other lr: the trial's refusal
        (["trainer.max_steps=4"], True),  # shorter: resumed, it trained nothing and published the old weights
        (["trainer.max_steps=6"], True),  # the same length
        (["trainer.max_steps=10", "optim.lr=1e-4"], True),  # longer with another lr: not a continuation
        (["trainer.max_steps=10"], False),  # longer, the same otherwise: trains the finished run on
    ],
)
def test_overwrite_over_a_completed_run_starts_over_unless_only_trained_longer(tmp_path, overrides, starts_over):
    finished_checkpoint(tmp_path, config(tmp_path, "trainer.max_steps=6"), 6)
    cfg = config(tmp_path, "overwrite=true", *overrides)
    resumed = resume_checkpoint(cfg, tmp_path, check=False)
    assert (resumed is None) == starts_over


def test_an_unfinished_checkpoint_of_an_overwrite_rerun_is_resumed(tmp_path):
    """A requeue of the overwrite=true line after a preemption: the old model/ is still there."""
    cfg = config(tmp_path, "trainer.max_steps=4", "optim.lr=1e-4", "overwrite=true")
    ckpt = finished_checkpoint(tmp_path, cfg, 2)
    content = torch.load(ckpt, weights_only=False)
    torch.save({**content, FINISHED_KEY: False}, ckpt)
    assert resume_checkpoint(cfg, tmp_path, check=False) == str(ckpt)


def manifest_of(cfg, status: str = "completed", trained: int | None = 4) -> dict:
    return {"config": OmegaConf.to_container(cfg, resolve=True), "status": status, "metrics": {"global_step": trained}}


def test_export_refuses_a_checkpoint_of_another_run_in_the_folder(tmp_path):
    from chipadapt.checkpoint_export import check_written_by_run

    run, ckpt = tmp_path, tmp_path / "checkpoints" / "epoch=1-step=6.ckpt"
    now = config(tmp_path, "trainer.max_steps=4", "optim.lr=1e-3")
    record = manifest_of(now)
    earlier = trajectory_settings(config(tmp_path, "trainer.max_steps=6", "optim.lr=1e-4"))
    with pytest.raises(ChipadaptError, match=r"holds step 6, but .* says this run trained 4 steps"):
        check_written_by_run(run, ckpt, record, {"global_step": 6, CHECKPOINT_KEY: earlier})
    with pytest.raises(ChipadaptError, match=r"other settings .*\(optim\.lr: 0\.0001 there, 0\.001 in the manifest"):
        check_written_by_run(run, ckpt, record, {"global_step": 4, CHECKPOINT_KEY: earlier})
    # A run still training: bounded by its length.
    with pytest.raises(ChipadaptError, match="trains at most 4 steps"):
        check_written_by_run(run, ckpt, manifest_of(now, "running", None), {"global_step": 6})
    # Its own checkpoints pass, one written before a resume made the run longer too.
    check_written_by_run(run, ckpt, record, {"global_step": 4, CHECKPOINT_KEY: trajectory_settings(now)})
    shorter = trajectory_settings(config(tmp_path, "trainer.max_steps=2", "optim.lr=1e-3"))
    check_written_by_run(run, ckpt, record, {"global_step": 2, CHECKPOINT_KEY: shorter})
