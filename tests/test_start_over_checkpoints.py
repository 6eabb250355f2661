"""A start-over leaves no checkpoint of the run it replaces, and export.py refuses one that is not its run's.

The trial: a 6-step run keeping every step's checkpoint, started over with overwrite=true resume=false as a
4-step run at another lr, kept the old `epoch=1-step=6.ckpt`; `export.py run=RUN step=6` exported the old
run's weights under the new run's manifest. And `overwrite=true optim.lr=1e-4 trainer.max_steps=4` over a
completed 6-step run was refused as "written by a run with other settings" where the README has it start
over."""

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.stages.checkpoint_records import CHECKPOINT_KEY, FINISHED_KEY
from chipadapt.stages.resume_decision import resume_checkpoint
from chipadapt.stages.resume_settings import trajectory_settings
from chipadapt.stages.start_over import discard_checkpoint


def config(tmp_path: Path, *overrides: str):
    return compose([*TINY_FAST, "trainer.max_epochs=-1", *overrides], tmp_path)


def test_a_start_over_discards_every_checkpoint_of_the_earlier_run(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("last.ckpt", "epoch=0-step=2.ckpt", "epoch=1-step=6.ckpt"):
        torch.save({"global_step": 2, CHECKPOINT_KEY: {}}, folder / name)
    (folder / "epoch=1-step=4.ckpt").mkdir()  # a sharded (FSDP) checkpoint is a folder
    torch.save({"global_step": 4, CHECKPOINT_KEY: {}}, folder / "epoch=1-step=4.ckpt" / "meta.pt")
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
    from chipadapt.checkpoint_ownership import check_written_by_run

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


def recorded_checkpoint(path: Path, settings: dict | None = None, step: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, CHECKPOINT_KEY: settings or {}}, path)
    return path


def test_a_start_over_keeps_what_the_checkpoint_callback_did_not_write(tmp_path, caplog):
    """The review's trial: `my-keep.ckpt` copied by hand and an `old_fsdp.ckpt/` folder were deleted."""
    folder = tmp_path / "checkpoints"
    recorded_checkpoint(folder / "last.ckpt")
    recorded_checkpoint(folder / "epoch=0-step=2.ckpt")
    recorded_checkpoint(folder / "my-keep.ckpt")  # this tool's records, but not a name the callback gives
    (folder / "old_fsdp.ckpt").mkdir()
    (folder / "old_fsdp.ckpt" / "meta.pt").write_bytes(b"another tool's")
    (folder / "epoch=0-step=4.ckpt").write_bytes(b"not a checkpoint of this tool")
    discard_checkpoint(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=4.ckpt", "my-keep.ckpt", "old_fsdp.ckpt"]
    assert "kept in" in caplog.text and "my-keep.ckpt" in caplog.text


def test_the_callback_filename_decides_which_step_checkpoints_are_its(tmp_path):
    folder = tmp_path / "checkpoints"
    recorded_checkpoint(folder / "run-step=4.ckpt")
    recorded_checkpoint(folder / "epoch=0-step=4.ckpt")
    discard_checkpoint(tmp_path, "run-{step}")
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=4.ckpt"]


def test_a_requeued_overwrite_continuation_resumes_its_unpublished_checkpoint(tmp_path):
    """Run A (6 steps) published; `trainer.max_steps=8 overwrite=true` resumed it to 8 and was preempted between
    step 8's checkpoint and the publish; the requeue of that line started over from step 0."""
    from chipadapt.stages.published_record import PUBLISHED_RECORD, published_record

    first = config(tmp_path, "trainer.max_steps=6")
    longer = config(tmp_path, "trainer.max_steps=8", "overwrite=true")
    ckpt = finished_checkpoint(tmp_path, longer, 8)
    (tmp_path / PUBLISHED_RECORD).write_text(json.dumps(published_record(6, trajectory_settings(first))))
    assert resume_checkpoint(longer, tmp_path, check=False) == str(ckpt)
    # Once model/ is published from it, the same line again trains from the start.
    (tmp_path / PUBLISHED_RECORD).write_text(json.dumps(published_record(8, trajectory_settings(longer))))
    assert resume_checkpoint(longer, tmp_path, check=False) is None


def test_a_folder_published_before_the_record_is_told_by_time(tmp_path):
    cfg = config(tmp_path, "trainer.max_steps=6", "overwrite=true")
    ckpt = finished_checkpoint(tmp_path, cfg, 6)
    (tmp_path / "model" / "config.json").write_text("{}")
    os.utime(ckpt, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))  # written after model/
    assert resume_checkpoint(cfg, tmp_path, check=False) == str(ckpt)
    os.utime(ckpt, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # model/ published after it
    assert resume_checkpoint(cfg, tmp_path, check=False) is None


@pytest.mark.parametrize(
    ("overrides", "starts_over"),
    [
        (["trainer.max_steps=4"], True),
        (["trainer.max_steps=6"], True),
        (["trainer.max_steps=10"], False),
        (["trainer.max_steps=10", "optim.lr=1e-4"], True),  # resumed, the settings check then refused it
    ],
)
def test_an_earlier_release_checkpoint_at_a_shorter_length_starts_over(tmp_path, overrides, starts_over):
    """Without FINISHED_KEY, `trainer.max_steps=4 overwrite=true` over a finished 6-step run resumed it, trained 0
    steps and republished the 6-step weights."""
    ckpt = finished_checkpoint(tmp_path, config(tmp_path, "trainer.max_steps=6"), 6)
    content = torch.load(ckpt, weights_only=False)
    del content[FINISHED_KEY]
    torch.save(content, ckpt)
    cfg = config(tmp_path, *overrides, "overwrite=true")
    assert (resume_checkpoint(cfg, tmp_path, check=False) is None) == starts_over


def test_a_start_over_cut_short_is_finished_by_the_rerun(tmp_path):
    """A kill after last.ckpt was renamed aside, before the step checkpoints were: the rerun with resume=true
    neither resumed what was left nor discarded it."""
    from chipadapt.stages.start_over import START_OVER_MARKER, start_over_pending

    folder = tmp_path / "checkpoints"
    recorded_checkpoint(folder / "last.ckpt")
    recorded_checkpoint(folder / "epoch=0-step=2.ckpt")
    (folder / START_OVER_MARKER).write_text("{}")
    (folder / ".epoch=0-step=4.ckpt.discarded").write_bytes(b"renamed aside")
    cfg = config(tmp_path, "trainer.max_steps=6")
    assert start_over_pending(tmp_path)
    assert resume_checkpoint(cfg, tmp_path, check=False) is None
    discard_checkpoint(tmp_path)
    assert list(folder.iterdir()) == []


def test_a_start_over_names_the_earlier_runs_exports(tmp_path, caplog):
    from chipadapt.stages.common import tell_earlier_exports

    class Manifest:
        def __init__(self):
            self.data = {"inputs": {}}

        def update(self, section, values):
            self.data[section].update(values)

    (tmp_path / "exports" / "step-6").mkdir(parents=True)
    manifest = Manifest()
    tell_earlier_exports(tmp_path, manifest)
    assert manifest.data["inputs"]["earlier_run_exports"] == ["step-6"]
    assert "exports of the earlier run" in caplog.text and "step-6" in caplog.text


def test_export_accepts_its_own_checkpoint_after_a_shorter_resume_that_did_not_complete(tmp_path):
    from chipadapt.checkpoint_ownership import check_written_by_run

    now = config(tmp_path, "trainer.max_steps=4")
    record = {**manifest_of(now, "failed", None), "inputs": {"resumed": {"step": 6}}}
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    check_written_by_run(tmp_path, ckpt, record, {"global_step": 6, CHECKPOINT_KEY: trajectory_settings(now)})
    with pytest.raises(ChipadaptError, match="resumed at step 6"):
        check_written_by_run(tmp_path, ckpt, record, {"global_step": 8})


def test_export_reads_recorded_settings_as_the_resume_check_does(tmp_path):
    """A record of an earlier version (a retired key, a renamed value) resumes; export refused it."""
    from chipadapt.checkpoint_ownership import check_written_by_run
    from chipadapt.run_settings import RENAMED_VALUES

    now = config(tmp_path, "trainer.max_steps=4", "optim=adamw_cosine")
    current = trajectory_settings(now)
    earlier = {**current, "data.val_max_sequences": 8}
    renamed = {new: old for old, new in RENAMED_VALUES.items()}
    earlier = {key: renamed.get(value, value) if isinstance(value, str) else value for key, value in earlier.items()}
    assert earlier != current
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    check_written_by_run(tmp_path, ckpt, manifest_of(now), {"global_step": 4, CHECKPOINT_KEY: earlier})


def test_a_checkpoint_of_the_earlier_chipnemo_ending_is_pointed_to_chipnemo_v1(tmp_path):
    from chipadapt.stages.resume_settings import check_resume_settings

    before = config(tmp_path, "stage=sft", "data=sft_sample", "data/template=chipnemo_v1")
    ckpt = recorded_checkpoint(tmp_path / "checkpoints" / "last.ckpt", trajectory_settings(before))
    now = config(tmp_path, "stage=sft", "data=sft_sample", "data/template=chipnemo")
    with pytest.raises(ChipadaptError, match=r"\(data/template=chipnemo_v1\)"):
        check_resume_settings(ckpt, now)
    check_resume_settings(ckpt, before)


def test_a_requeued_retrain_with_the_same_settings_resumes_its_own_checkpoint(tmp_path):
    """A published 6-step run retrained with `overwrite=true` and the same settings: its start-over, then its
    own step-6 checkpoint and a preemption before the publish. The earlier run's publish record matched that
    checkpoint (same step, same settings), so the requeue took it as published and started over again."""
    from chipadapt.stages.published_record import PUBLISHED_RECORD, published_record

    cfg = config(tmp_path, "trainer.max_steps=6", "overwrite=true")
    finished_checkpoint(tmp_path, cfg, 6)
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / PUBLISHED_RECORD).write_text(json.dumps(published_record(6, trajectory_settings(cfg))))
    discard_checkpoint(tmp_path)  # the retrain's start-over
    assert not (tmp_path / PUBLISHED_RECORD).exists()
    ckpt = finished_checkpoint(tmp_path, cfg, 6)  # the retrain's own last checkpoint, after model/
    os.utime(ckpt, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    assert resume_checkpoint(cfg, tmp_path, check=False) == str(ckpt)
