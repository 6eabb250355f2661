"""One requeue per SLURM job, whoever started the processes: with trainer=ddp and trainer.devices=2 in an
sbatch script of one task, Lightning starts the second process itself, which has LOCAL_RANK=1 but no
RANK or SLURM_PROCID of its own. Before, that process ran `scontrol requeue` too (the job requeued
twice); now every rank question goes through one helper (io.lock.is_secondary_rank)."""

import os
import signal

import pytest
from helpers.launch_env import launched_with

# A job array's task is requeued as <array job>_<task> (slurm_requeue.slurm_job_id): the tests requeue job 777.
ARRAY_VARIABLES = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")


@pytest.fixture
def slurm_job(tmp_path, monkeypatch):
    """SLURM job 777 with an `scontrol` that records its calls; no rank variable set."""
    for variable in ARRAY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    launched_with(monkeypatch)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "scontrol.log"}"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    log = tmp_path / "scontrol.log"
    return lambda: log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    "rank",
    [
        {"LOCAL_RANK": "1", "WORLD_SIZE": "2"},
        {"NODE_RANK": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "4"},
        {"LOCAL_RANK": "1"},  # a worker of trainer.strategy=ddp_fork/ddp_spawn: Lightning sets no WORLD_SIZE there
        {"TORCHELASTIC_RUN_ID": "none", "RANK": "3", "WORLD_SIZE": "4"},
        {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"},
        # torchrun in srun -N2 tasks: ranks by arrival, torchrun's RANK is Lightning's rank, not SLURM_PROCID
        {"TORCHELASTIC_RUN_ID": "j77", "RANK": "5", "WORLD_SIZE": "8", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"},
    ],
)
def test_a_process_that_is_not_global_rank_0_leaves_the_requeue_to_rank_0(slurm_job, monkeypatch, rank):
    from chipadapt.scaleout.slurm_requeue import requeue_job

    for variable, value in rank.items():
        monkeypatch.setenv(variable, value)
    assert requeue_job(signal.SIGUSR1, None).note == "SLURM job 777: rank 0 requeues it"
    assert slurm_job() == []


def test_global_rank_0_requeues_once(slurm_job, monkeypatch):
    from chipadapt.scaleout.slurm_requeue import requeue_job

    monkeypatch.setenv("LOCAL_RANK", "0")  # Lightning's first process, SLURM_PROCID unset
    assert "requeued" in requeue_job(signal.SIGUSR1, None).note
    assert slurm_job() == ["requeue 777"]


def test_torchruns_rank_0_requeues_whatever_task_of_the_step_it_runs_in(slurm_job, monkeypatch):
    """srun -N2 torchrun --rdzv-backend c10d: RANK 0 may land in the task SLURM_PROCID=1; it alone requeues."""
    from chipadapt.scaleout.slurm_requeue import requeue_job

    for variable, value in {"TORCHELASTIC_RUN_ID": "j77", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "8"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert "requeued" in requeue_job(signal.SIGUSR1, None).note
    assert slurm_job() == ["requeue 777"]


def test_only_global_rank_0_says_what_a_signal_did(monkeypatch, capfd):
    from chipadapt.interrupts import _say

    for variable in ARRAY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    launched_with(monkeypatch, NODE_RANK="1", LOCAL_RANK="0", WORLD_SIZE="4")  # the first process of the second node
    _say("stopping")
    monkeypatch.setenv("NODE_RANK", "0")
    _say("rank zero")
    assert capfd.readouterr().err == "chipadapt: rank zero\n"
