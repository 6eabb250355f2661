"""One rule names rank 0 (io/launch_ranks), in the order Lightning reads the rank: torchrun's RANK, else srun's
SLURM_PROCID, else Lightning's NODE_RANK/LOCAL_RANK. Any rank variable above 0 counted, so a variable the launcher
does not set overrode one it does, and no process of such a launch locked, answered or requeued as rank 0. The
workers of Lightning's ddp_fork/ddp_spawn/ddp_notebook have LOCAL_RANK and no WORLD_SIZE: each was taken for a lone
process, and on SIGUSR1 every one requeued the job."""

import ast
import inspect
import queue

import pytest
from helpers.launch_env import LAUNCHER_VARIABLES, launched_with

from chipadapt.io import launch_ranks
from chipadapt.io.lock import is_secondary_rank
from chipadapt.scaleout.rank0_load import launched_as_global_zero


@pytest.fixture
def launched_as(monkeypatch):
    return lambda **variables: launched_with(monkeypatch, **variables)


# srun -N2 torchrun --rdzv-backend c10d: c10d numbers the ranks by arrival, so the task SLURM_PROCID=1 may hold RANK 0.
SRUN_TORCHRUN = {"TORCHELASTIC_RUN_ID": "job-77", "WORLD_SIZE": "8", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "dapt"}
# torchrun on the second node of a cluster that sets NODE_RANK for every node.
TORCHRUN_NODE_1 = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "4", "NODE_RANK": "1"}


@pytest.mark.parametrize(
    "variables, zero, label",
    [
        ({**SRUN_TORCHRUN, "RANK": "0", "LOCAL_RANK": "0", "SLURM_PROCID": "1"}, True, "0"),
        ({**SRUN_TORCHRUN, "RANK": "4", "LOCAL_RANK": "0", "SLURM_PROCID": "0"}, False, "4"),
        ({**TORCHRUN_NODE_1, "RANK": "0", "LOCAL_RANK": "0"}, True, "0"),
        ({**TORCHRUN_NODE_1, "RANK": "2", "LOCAL_RANK": "0"}, False, "2"),
        # srun alone: SLURM_PROCID, whatever NODE_RANK the cluster set
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "dapt", "NODE_RANK": "1"}, True, "0"),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_JOB_NAME": "dapt"}, False, "3"),
        # an interactive SLURM shell: Lightning's launcher numbers the processes, SLURM_PROCID is 0 in all
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "bash", "LOCAL_RANK": "1"}, False, "1"),
        # Lightning's launcher, node 1 (its documented variables: WORLD_SIZE, NODE_RANK)
        ({"WORLD_SIZE": "2", "NODE_RANK": "1", "LOCAL_RANK": "0"}, False, "1-0"),
        ({"WORLD_SIZE": "2", "GROUP_RANK": "1"}, False, "1-0"),
        # lone processes whose cluster set a rank variable
        ({"NODE_RANK": "1"}, True, "1-0"),
        ({"RANK": "3"}, True, "0"),  # Lightning does not read RANK outside torchrun
    ],
)
def test_rank_0_is_the_process_lightning_makes_global_rank_0(launched_as, variables, zero, label):
    launched_as(**variables)
    assert launched_as_global_zero() is zero
    assert is_secondary_rank() is not zero
    assert launch_ranks.rank_label() == label


def test_lightnings_forked_and_spawned_workers_are_other_processes(launched_as, monkeypatch):
    """Lightning's own code gives the worker its environment: _MultiProcessingLauncher._wrapping_function sets
    `os.environ["LOCAL_RANK"] = str(process_idx)` and nothing else, no WORLD_SIZE (ddp_fork, ddp_spawn and
    ddp_notebook alike; the main process, idx 0, runs the same function)."""
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    launched_as()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # _set_num_threads_if_needed leaves torch's threads alone then
    monkeypatch.setenv("LOCAL_RANK", "")  # restored after the test: _wrapping_function sets it in this process

    class TwoProcesses:  # what _wrapping_function reads of its strategy
        accelerator = CPUAccelerator()
        num_processes = 2

    launcher = _MultiProcessingLauncher(TwoProcesses(), start_method="fork")
    seen = {}
    for process_idx in (1, 0):

        def probe(idx=process_idx):
            seen[idx] = (is_secondary_rank(), launched_as_global_zero(), launch_ranks.rank_label())

        launcher._wrapping_function(process_idx, None, probe, (), {}, queue.Queue())
    assert seen == {1: (True, False, "1"), 0: (False, True, "0")}


def test_every_variable_launch_ranks_reads_is_cleared_for_a_test(launched_as, monkeypatch):
    """A variable of the developer's shell that a test's launch left in place changed which process was rank 0
    (PMIX_RANK=1 left by an MPI module had every lone process refused)."""
    source = ast.parse(inspect.getsource(launch_ranks))
    read = {
        node.value
        for node in ast.walk(source)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isupper()
    }
    assert {"PMIX_RANK", "JSM_NAMESPACE_LOCAL_RANK", "GROUP_RANK"} <= read  # the scan finds the names
    assert read <= set(LAUNCHER_VARIABLES)
    for variable in read:
        monkeypatch.setenv(variable, "3")
    launched_as(NODE_RANK="1")
    assert launched_as_global_zero() is True
    assert launch_ranks.rank_label() == "1-0"
