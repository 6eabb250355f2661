"""What a checkpoint remembers of its run's settings, and what a resume compares (the end-to-end
resume is in test_train_dapt.py)."""

import logging

import pytest
import torch
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.stages.resume_settings import CHECKPOINT_KEY, check_resume_settings, trajectory_settings


def settings(tmp_path, *overrides):
    return trajectory_settings(compose([*TINY_FAST, *overrides], tmp_path / "run"))


def test_folders_that_move_between_machines_are_not_settings(tmp_path):
    here = settings(tmp_path, f"paths.cache_dir={tmp_path / 'one'}", f"paths.shared_data={tmp_path / 'a'}")
    there = settings(tmp_path, f"paths.cache_dir={tmp_path / 'two'}", f"paths.shared_data={tmp_path / 'b'}")
    assert here == there
    assert not any(str(tmp_path) in str(value) for value in here.values())
    assert here["model.source.text_dir"] == "${chipadapt_resource:}/sample_corpus"  # the installed package's
    # A user's own model folder is compared as given: another folder is another model.
    assert settings(tmp_path, "model.path=/models/a") != settings(tmp_path, "model.path=/models/b")
    assert here["optim.lr"] == 5e-6 and here["trainer.max_steps"] == -1 and "trainer.devices" not in here
    assert not any(key.startswith(("logger.", "callbacks.", "paths.")) for key in here)


def test_what_is_read_only_around_training_is_not_compared(tmp_path):
    assert settings(tmp_path) == settings(tmp_path, "stage.validate_before=false", "data.val_max_bytes=300")
    assert settings(tmp_path) != settings(tmp_path, "data.global_batch_size=8")


def save(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def test_a_folder_checkpoint_is_compared_through_its_metadata_file(tmp_path):
    cfg = compose([*TINY_FAST, "optim.lr=1e-3"], tmp_path / "run")
    other = trajectory_settings(compose([*TINY_FAST, "optim.lr=2e-3"], tmp_path / "run"))
    sharded = tmp_path / "last.ckpt"
    save(sharded / "meta.pt", {CHECKPOINT_KEY: other, "global_step": 3})
    with pytest.raises(ChipadaptError, match=r"optim.lr, .*: 0.002 -> 0.001"):
        check_resume_settings(sharded, cfg)
    save(sharded / "meta.pt", {CHECKPOINT_KEY: trajectory_settings(cfg)})
    check_resume_settings(sharded, cfg)


def test_a_checkpoint_of_the_earlier_warm_up_schedule_resumes_under_the_new_one(tmp_path, caplog):
    """adamw_cosine's scheduler changed its `_target_` (NeMo's warm-up, the first step above lr 0): every
    SFT, SteerLM and retriever run preempted under the earlier version was refused its resume."""
    cfg = compose([*TINY_FAST, "optim=adamw_cosine"], tmp_path / "run")
    earlier = {
        key: "transformers.get_cosine_schedule_with_warmup" if key.endswith("scheduler._target_") else value
        for key, value in trajectory_settings(cfg).items()
    }
    assert "transformers.get_cosine_schedule_with_warmup" in earlier.values()
    with caplog.at_level(logging.WARNING):
        check_resume_settings(save(tmp_path / "last.ckpt", {CHECKPOINT_KEY: earlier, "global_step": 3}), cfg)
    assert "written with Hugging Face's warm-up" in caplog.text
    other = {**earlier, "optim.lr": 1.0}  # anything else still stops it
    with pytest.raises(ChipadaptError, match="optim.lr"):
        check_resume_settings(save(tmp_path / "other.ckpt", {CHECKPOINT_KEY: other, "global_step": 3}), cfg)


def test_an_old_or_unreadable_checkpoint(tmp_path, caplog):
    cfg = compose(TINY_FAST, tmp_path / "run")
    with caplog.at_level(logging.INFO):
        check_resume_settings(save(tmp_path / "old.ckpt", {"state_dict": {}}), cfg)
    assert "predates recorded settings" in caplog.text
    with pytest.raises(ChipadaptError, match=r"list.ckpt: not a Lightning checkpoint; resume=false"):
        check_resume_settings(save(tmp_path / "list.ckpt", [1, 2]), cfg)
    (tmp_path / "cut.ckpt").write_bytes(save(tmp_path / "whole.ckpt", {"a": torch.ones(4)}).read_bytes()[:60])
    with pytest.raises(ChipadaptError, match=r"cut.ckpt: checkpoint cannot be read .*resume=false"):
        check_resume_settings(tmp_path / "cut.ckpt", cfg)


def test_the_starting_validation_comes_back_only_when_the_resumed_run_validates_the_same_sequences(caplog):
    from chipadapt.stages.common import StartingMetrics, validation_settings

    cfg = OmegaConf.create({"data": {"val_fraction": 0.1, "val_max_bytes": 8192}, "trainer": {}})
    first = StartingMetrics(validation_settings(cfg))
    first.values = {"domain": {"loss": 2.0}}
    state = first.state_dict()
    same = StartingMetrics(validation_settings(cfg))
    same.load_state_dict(state)
    assert same.values == {"domain": {"loss": 2.0}}
    cfg.data.val_max_bytes = 65536  # not a training setting: the resume is allowed, the comparison is not
    other = StartingMetrics(validation_settings(cfg))
    other.load_state_dict(state)
    assert other.values == {} and "data.val_max_bytes" in caplog.text
