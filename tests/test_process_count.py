"""The process count behind the batch plan is the one Lightning runs: trainer.devices read with
Lightning's parser on the accelerator it names, the launcher's process count checked against it before
any work, and the plan's steps and tokens counted from the sequences the blend holds."""

import pytest
import torch
from omegaconf import OmegaConf

from chipadapt.batch_plan import batch_plan, check_trainer_world, run_plan, world_size
from chipadapt.errors import ChipadaptError
from chipadapt.trainer_schema import check_devices, check_trainer_on_this_machine


@pytest.fixture
def eight_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def trainer(devices, accelerator="gpu", nodes=1, **more):
    return OmegaConf.create({"devices": devices, "accelerator": accelerator, "num_nodes": nodes, **more})


@pytest.mark.parametrize(
    "devices,processes", [("0,1", 2), ("0,3,5", 3), ([0, 1], 2), (-1, 8), ("-1", 8), ("auto", 8), (3, 3), ("4", 4)]
)
@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "auto"])
def test_devices_count_as_lightning_counts_them_on_a_gpu_node(eight_gpus, devices, processes, accelerator):
    assert world_size(trainer(devices, accelerator, nodes=2)) == 2 * processes


def test_a_comma_string_of_two_gpus_keeps_the_global_batch(eight_gpus):
    data = OmegaConf.create({"global_batch_size": 256, "micro_batch_size": 1, "seq_len": 64})
    plan = batch_plan(data, trainer("0,1"))
    assert (plan.world_size, plan.accumulation) == (2, 128)


def test_a_trainer_running_other_processes_than_planned_is_refused():
    class Built:
        world_size = 2

    check_trainer_world(2, Built())
    with pytest.raises(ChipadaptError, match="runs 2 processes but the batch plan was computed for 8"):
        check_trainer_world(8, Built())


@pytest.mark.parametrize("devices", [-1, "-1", "0,1", [0, 1]])  # 0 is no device count on any accelerator
def test_cpu_devices_that_lightning_refuses_are_refused_in_one_line(devices):
    with pytest.raises(ChipadaptError, match=r"trainer\.devices: .* trainer\.accelerator=cpu.*trainer\.devices=2"):
        check_devices(devices, "cpu")


@pytest.mark.parametrize("devices", [1, 2, "2", "auto"])
def test_cpu_process_counts_pass(devices):
    check_devices(devices, "cpu")


def test_auto_accelerator_on_a_cpu_machine_with_all_devices_is_refused_where_the_job_trains(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ChipadaptError, match="trainer.accelerator=cpu"):
        check_trainer_on_this_machine(trainer(-1, "auto", strategy="ddp"))


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_torchrun_starting_other_processes_than_devices_x_nodes_is_refused(no_launcher):
    no_launcher.setenv("TORCHELASTIC_RUN_ID", "test")
    no_launcher.setenv("WORLD_SIZE", "2")
    check_trainer_on_this_machine(trainer(2, "cpu", strategy="ddp"))
    with pytest.raises(ChipadaptError, match=r"trainer\.num_nodes=1 is 1 processes, but torchrun .*WORLD_SIZE=2"):
        check_trainer_on_this_machine(trainer(1, "cpu", strategy="ddp"))


def test_srun_tasks_other_than_devices_x_nodes_are_refused(no_launcher):
    no_launcher.setenv("SLURM_NTASKS", "4")
    no_launcher.setenv("SLURM_JOB_NAME", "train")
    check_trainer_on_this_machine(trainer(2, "cpu", nodes=2, strategy="ddp"))
    with pytest.raises(ChipadaptError, match="is 2 processes, but srun started SLURM_NTASKS=4"):
        check_trainer_on_this_machine(trainer(1, "cpu", nodes=2, strategy="ddp"))
    no_launcher.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation: Lightning ignores SLURM
    no_launcher.setenv("WORLD_SIZE", "2")  # started by hand on each node, as Lightning's multi-node launch needs
    check_trainer_on_this_machine(trainer(1, "cpu", nodes=2, strategy="ddp"))


def test_several_nodes_started_by_hand_without_world_size_are_refused(no_launcher):
    # Node 1's process would pass for a lone one until Lightning set WORLD_SIZE at fit: it took the run folder.
    with pytest.raises(ChipadaptError, match=r"trainer\.num_nodes=2 with no launcher .*export WORLD_SIZE=4"):
        check_trainer_on_this_machine(trainer(2, "cpu", nodes=2, strategy="ddp"))
    no_launcher.setenv("WORLD_SIZE", "4")
    check_trainer_on_this_machine(trainer(2, "cpu", nodes=2, strategy="ddp"))


def plan_of(sequences, seq_len, max_steps, max_epochs, global_batch=256):
    data = OmegaConf.create({"global_batch_size": global_batch, "micro_batch_size": 1, "seq_len": seq_len})
    trainer_cfg = trainer(1, "cpu", max_steps=max_steps, max_epochs=max_epochs)
    plan_cfg = OmegaConf.create({"tokens_per_s_per_gpu": 2971, "gpu": None})
    return run_plan(batch_plan(data, trainer_cfg), sequences, trainer_cfg, plan_cfg)


def test_a_blend_smaller_than_one_global_batch_is_counted_as_the_step_it_gives():
    planned = plan_of(223, 64, 2, 1)  # the sample corpus at seq_len 64: train/tokens_seen 14272
    assert (planned["steps"], planned["tokens"]) == (1, 223 * 64)
    assert "1 steps = 14,272 tokens" in planned["text"] and "each step trains on 223" in planned["text"]
    assert "trainer.max_steps=2 is more than trainer.max_epochs=1 holds" in planned["note"]
    planned = plan_of(3, 4096, 23200, 1)  # ChipNeMo's 23,200 steps on a 3-sequence blend: one step
    assert (planned["steps"], planned["tokens"]) == (1, 3 * 4096) and planned["note"]
    planned = plan_of(3, 4096, 23200, -1)  # no epoch limit: 23,200 steps of the 3 sequences
    assert (planned["steps"], planned["tokens"]) == (23200, 23200 * 3 * 4096)


def test_the_sequences_left_out_of_whole_global_batches_are_said():
    planned = plan_of(600, 64, -1, 1)
    assert (planned["steps"], planned["tokens"]) == (2, 512 * 64) and planned["note"] is None
    assert "88 sequences an epoch left out" in planned["text"]


def test_one_process_in_a_slurm_job_of_several_tasks_trains(no_launcher):
    """A batch script's `python train.py` (no srun) in a job of 4 tasks: SLURM_NTASKS is the job's count, and
    Lightning runs one process on a single-device strategy, reading nothing of SLURM."""
    no_launcher.setenv("SLURM_NTASKS", "4")
    no_launcher.setenv("SLURM_JOB_NAME", "train")
    check_trainer_on_this_machine(trainer(1, "cpu"))
