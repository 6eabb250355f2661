"""A lone process whose cluster set NODE_RANK or SLURM_PROCID above 0 (every process of a multi-node allocation, a
task of a job step) locks its run folder like any single process: it was taken for a worker of a distributed run,
took no lock, and a second command into its folder ran beside it. The other processes a launcher started (WORLD_SIZE,
SLURM_NTASKS above 1) still share rank 0's folder without locking it."""

import os

import pytest
from helpers.launch_env import launched_with

from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import LOCK_NAME, run_folder_lock
from chipadapt.io.lock_probe import folder_lock_held


@pytest.mark.parametrize(
    "variables",
    [{"NODE_RANK": "1"}, {"SLURM_PROCID": "3", "SLURM_NTASKS": "1"}, {"NODE_RANK": "2", "WORLD_SIZE": "1"}],
)
def test_a_lone_process_with_a_rank_variable_locks_its_run_folder(tmp_path, monkeypatch, variables):
    launched_with(monkeypatch, **variables)
    with run_folder_lock(tmp_path):
        assert folder_lock_held(tmp_path) is True
        with pytest.raises(ChipadaptError, match=f"run folder in use by pid {os.getpid()}"):
            with run_folder_lock(tmp_path):  # a second command into the same folder
                pass
    assert folder_lock_held(tmp_path) is False


@pytest.mark.parametrize(
    "variables",
    [
        {"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none"},
        {"SLURM_PROCID": "1", "SLURM_NTASKS": "4"},
        {"LOCAL_RANK": "1", "WORLD_SIZE": "2"},
        {"LOCAL_RANK": "1"},  # a worker of Lightning's ddp_fork/ddp_spawn: no WORLD_SIZE
        {"NODE_RANK": "1", "WORLD_SIZE": "4"},
    ],
)
def test_the_other_processes_of_a_launch_share_rank_0s_folder_unlocked(tmp_path, monkeypatch, variables):
    launched_with(monkeypatch)
    with run_folder_lock(tmp_path):  # rank 0 holds the folder
        launched_with(monkeypatch, **variables)
        with run_folder_lock(tmp_path):
            pass
    launched_with(monkeypatch, **variables)
    with run_folder_lock(tmp_path / "fresh"):
        assert not (tmp_path / "fresh" / LOCK_NAME).exists()


def test_a_started_process_stays_one_of_several_after_its_launcher_drops_world_size(tmp_path, monkeypatch):
    # Lightning's LightningEnvironment.teardown deletes WORLD_SIZE after fit; the process it started must still
    # leave rank 0's folder lock and manifest alone.
    from chipadapt.io.launch_ranks import other_process_of_a_launch

    launched_with(monkeypatch, LOCAL_RANK="1", WORLD_SIZE="2")
    assert other_process_of_a_launch() is True
    monkeypatch.delenv("WORLD_SIZE")
    assert other_process_of_a_launch() is True
    with run_folder_lock(tmp_path):
        assert not (tmp_path / LOCK_NAME).exists()  # rank 0's folder, left unlocked by this process
