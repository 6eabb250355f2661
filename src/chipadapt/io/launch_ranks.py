"""Which process of a launch this one is: the one rule for whether it is rank 0, which says and writes the run's
record (its folder lock, manifest.json, the answer to whether it resumes, its requeue), or another process that leaves
that to rank 0; scaleout/rank0_load reads it too, to know which process loads the weights.

The rank is read where Lightning reads it (accelerator_connector._choose_and_init_cluster_environment), so that the
process taken for rank 0 here is Lightning's global rank 0: torchrun's RANK (TORCHELASTIC_RUN_ID set), else srun's
SLURM_PROCID (SLURM_NTASKS set, the job not named bash or interactive), else LSF's JSM_NAMESPACE_RANK, else Lightning's
own launcher's NODE_RANK and LOCAL_RANK. Any rank variable above 0 counted once, and a variable the launcher does not
set overrode one it does: `srun -N2 torchrun` (c10d numbers the ranks by arrival: RANK=0 in the task SLURM_PROCID=1)
or torchrun on a cluster that sets NODE_RANK for every node left no process as rank 0, and all waited for one.

A rank variable alone does not make another process: a cluster may set NODE_RANK or SLURM_PROCID for a process that
runs alone (every process of a multi-node allocation, a task of a job step), and a lone evaluate.py, merge.py or
train.py there was taken for a worker of a distributed run. Several processes are what a launcher says it started:
torchrun's (and Lightning's own launcher's) WORLD_SIZE, srun's SLURM_NTASKS, LSF's JSM_NAMESPACE_SIZE. LOCAL_RANK above
0 says so on its own: a launcher sets it only for the processes it starts beside the first (SLURM sets SLURM_LOCALID,
not LOCAL_RANK), and Lightning's ddp_fork, ddp_spawn and ddp_notebook give their workers LOCAL_RANK and no
WORLD_SIZE. MPI (mpi4py, not among this project's dependencies) is not read."""

import os

# Lightning's SLURMEnvironment.detect (_is_slurm_interactive_mode): a job so named is a shell in which another
# launcher starts the processes.
INTERACTIVE_SLURM_JOBS = ("bash", "interactive")
# LSFEnvironment.detect
LSF_VARIABLES = ("LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")


def _count(variable: str) -> int:
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() else 0


def _global_rank_variable() -> str | None:
    """The variable whose value is this process's global rank, as Lightning picks its cluster environment; None under
    Lightning's own launcher, which numbers a process by NODE_RANK and LOCAL_RANK."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torch.distributed.is_torchelastic_launched
        return "RANK"
    if "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in INTERACTIVE_SLURM_JOBS:
        return "SLURM_PROCID"
    if all(variable in os.environ for variable in LSF_VARIABLES):
        return "JSM_NAMESPACE_RANK"
    return None


def _node_rank() -> int:
    """LightningEnvironment.node_rank: NODE_RANK, else torchelastic's GROUP_RANK."""
    return _count("NODE_RANK" if "NODE_RANK" in os.environ else "GROUP_RANK")


def _launcher_says_several() -> bool:
    return any(_count(variable) > 1 for variable in ("WORLD_SIZE", "SLURM_NTASKS", "JSM_NAMESPACE_SIZE"))


# Remembered once seen: Lightning's own launcher deletes WORLD_SIZE when its strategy tears down after fit
# (LightningEnvironment.teardown), and a process it started would then pass for a lone one, writing manifest.json
# or taking rank 0's folder lock after training. Read at import too, which in a started process comes before fit.
_seen_several = _launcher_says_several()


def several_processes_launched() -> bool:
    global _seen_several
    _seen_several = _seen_several or _launcher_says_several()
    return _seen_several


def _rank_above_0() -> bool:
    variable = _global_rank_variable()
    if variable is not None:
        return _count(variable) > 0
    return _node_rank() > 0 or _count("LOCAL_RANK") > 0


def other_process_of_a_launch() -> bool:
    """One of several processes a launcher started, whose global rank is above 0."""
    return _count("LOCAL_RANK") > 0 or (several_processes_launched() and _rank_above_0())


def launched_as_global_zero() -> bool:
    """Whether this process is the one a launcher started as global rank 0, or a process that runs alone."""
    return not other_process_of_a_launch()


def rank_label() -> str:
    """This process's rank as its launcher gives it: the global rank (torchrun's RANK, srun's SLURM_PROCID, LSF's
    JSM_NAMESPACE_RANK), or, for a process Lightning's launcher started (no global rank in its environment),
    NODE_RANK-LOCAL_RANK where the node is not the first."""
    variable, local = _global_rank_variable(), _count("LOCAL_RANK")
    if variable is not None and (_count(variable) > 0 or not local):
        return str(_count(variable))
    node = _node_rank()
    return f"{node}-{local}" if node else str(local)
