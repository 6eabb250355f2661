"""A run resumed on another number of processes keeps its data order (the sampler cuts by global
batches) but not its dropout masks (callbacks/step_seed.py seeds by a micro-batch's place within its
process's step): the resume says so, naming both counts, instead of going on without a word."""

import logging
from types import SimpleNamespace

import torch
from conftest import TINY_FAST, compose

from chipadapt.stages import checkpoint_records
from chipadapt.stages.checkpoint_records import ACCUMULATION_KEY, CHECKPOINT_KEY, PROCESSES_KEY, RecordSettings
from chipadapt.stages.resume_settings import check_resume_settings, trajectory_settings


def checkpoint(tmp_path, **content):
    recorded = trajectory_settings(compose(TINY_FAST, tmp_path / "run"))  # global batch 4, micro-batch 1
    path = tmp_path / "last.ckpt"
    torch.save({CHECKPOINT_KEY: recorded, "global_step": 5, **content}, path)
    return path


def resume(tmp_path, ckpt, caplog, devices: int) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_resume_settings(ckpt, compose([*TINY_FAST, f"trainer.devices={devices}"], tmp_path / "run"))
    return caplog.text


def test_every_checkpoint_records_its_number_of_processes(monkeypatch):
    monkeypatch.setattr(checkpoint_records, "training_done", lambda trainer: False)
    trainer = SimpleNamespace(accumulate_grad_batches=2, world_size=2, callback_metrics={})
    content = {}
    RecordSettings({}).on_save_checkpoint(trainer, None, content)
    assert content[PROCESSES_KEY] == 2 and content[ACCUMULATION_KEY] == 2


def test_a_resume_on_another_number_of_processes_warns_naming_both(tmp_path, caplog):
    ckpt = checkpoint(tmp_path, **{PROCESSES_KEY: 2, ACCUMULATION_KEY: 2})
    told = resume(tmp_path, ckpt, caplog, devices=1)
    assert "written by 2 processes, on 1" in told
    assert "same sequences" in told and "dropout masks" in told and "step_seed" in told
    assert "written by" not in resume(tmp_path, ckpt, caplog, devices=2)  # the same count: nothing to say


def test_an_earlier_checkpoint_s_count_follows_from_its_batch_and_accumulation(tmp_path, caplog):
    # Global batch 4 = micro-batch 1 x 1 process x accumulation 4: resumed on 2 processes.
    ckpt = checkpoint(tmp_path, **{ACCUMULATION_KEY: 4})
    assert "written by 1 process, on 2" in resume(tmp_path, ckpt, caplog, devices=2)
    # Neither recorded nor implied: nothing is claimed.
    assert "written by" not in resume(tmp_path, checkpoint(tmp_path), caplog, devices=2)
