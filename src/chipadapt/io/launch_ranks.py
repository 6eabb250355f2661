"""Which process of a launch this one is: the one rule for whether it is rank 0, which says and writes the run's
record (its folder lock, manifest.json, the answer to whether it resumes, its requeue), or another process that leaves
that to rank 0; scaleout/rank0_load reads it too, to know which process loads the weights.

The rank is read where Lightning reads it (accelerator_connector._choose_and_init_cluster_environment), so that the
process taken for rank 0 here is Lightning's global rank 0: torchrun's RANK (TORCHELASTIC_RUN_ID set), else srun's
SLURM_PROCID (SLURM_NTASKS set, the job not named bash or interactive), else LSF's JSM_NAMESPACE_RANK, else MPI's rank
in COMM_WORLD (MPIEnvironment), else Lightning's own launcher's NODE_RANK and LOCAL_RANK. Any rank variable above 0
counted once, and a variable the launcher does not set overrode one it does: `srun -N2 torchrun` (c10d numbers the
ranks by arrival: RANK=0 in the task SLURM_PROCID=1) or torchrun on a cluster that sets NODE_RANK for every node left
no process as rank 0, and all waited for one.

A rank variable alone does not make another process: a cluster may set NODE_RANK or SLURM_PROCID for a process that
runs alone (every process of a multi-node allocation, a task of a job step), and a lone evaluate.py, merge.py or
train.py there was taken for a worker of a distributed run. Several processes are what a launcher says it started:
torchrun's (and Lightning's own launcher's) WORLD_SIZE, srun's SLURM_NTASKS, LSF's JSM_NAMESPACE_SIZE. LOCAL_RANK above
0 says so on its own: a launcher sets it only for the processes it starts beside the first (SLURM sets SLURM_LOCALID,
not LOCAL_RANK), and Lightning's ddp_fork, ddp_spawn and ddp_notebook give their workers LOCAL_RANK and no
WORLD_SIZE.

MPI: Lightning's MPIEnvironment takes a process for one of several when mpi4py imports and its COMM_WORLD holds more
than one process, and its rank is then the rank in COMM_WORLD. mpi4py (not among this project's dependencies) is
asked only where an MPI launcher says it started several processes (Open MPI's OMPI_COMM_WORLD_SIZE, Hydra's PMI_SIZE
for MPICH and Intel MPI, a PMIx rank above 0), since importing it initialises MPI. Where it is missing, or its MPI
is not the launcher's (COMM_WORLD of one process), Lightning runs each of those processes as a lone rank 0 that locks,
writes and publishes the same folder. Every such process is refused (a ChipadaptError) the first time the rank is
asked (cli.run_job asks before the job's work), before the folder's lock is taken or its manifest written: the
launcher's rank 0 too, since mpirun ends the whole job once the others exit with an error, and a rank 0 let through
would be killed with its folder half-started. A process that one rank of an MPI job starts alone inherits the
launcher's variables: the message names the one to unset for it."""

import importlib.util
import os
from functools import cache

from chipadapt.errors import ChipadaptError

# Lightning's SLURMEnvironment.detect (_is_slurm_interactive_mode): a job so named is a shell in which another
# launcher starts the processes.
INTERACTIVE_SLURM_JOBS = ("bash", "interactive")
# LSFEnvironment.detect
LSF_VARIABLES = ("LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")
# What an MPI launcher sets in every process it starts (rank, size): Open MPI's mpirun, and the Hydra mpiexec of MPICH,
# Intel MPI and MVAPICH (PMI).
MPI_LAUNCH_VARIABLES = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"))
# PMIx (Open MPI 5's prterun) sets a rank and no size: a rank above 0 alone says there are several.
PMIX_RANK = "PMIX_RANK"


def _count(variable: str) -> int:
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() else 0


def _mpi_launch() -> tuple[str, str, int] | None:
    """(rank variable, the variable that says so, number of processes) where an MPI launcher says it started
    several, None where none did."""
    for rank, size in MPI_LAUNCH_VARIABLES:
        if _count(size) > 1:
            return rank, size, _count(size)
    if _count(PMIX_RANK) > 0:
        return PMIX_RANK, PMIX_RANK, _count(PMIX_RANK) + 1
    return None


@cache
def _mpi_world() -> tuple[int, int] | None:
    """(rank, size) of mpi4py's COMM_WORLD as MPIEnvironment.detect reads it; None where mpi4py is missing or its
    MPI library is not there. Asked once: its import initialises MPI."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    try:
        from mpi4py import MPI
    except ImportError:  # mpi4py installed without an MPI library (MPIEnvironment.detect)
        return None
    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def _mpi_rank() -> int | None:
    """This process's rank in COMM_WORLD where an MPI launcher started several and Lightning would use
    MPIEnvironment; None where no MPI launcher started several. Refused where Lightning would not use it."""
    launch = _mpi_launch()
    if launch is None:
        return None
    world = _mpi_world()
    if world is None or world[1] < 2:
        rank, variable, size = launch
        seen = (
            "mpi4py is not installed (or finds no MPI library)"
            if world is None
            else "mpi4py's MPI sees this process alone"
        )
        numbered = f"{variable}={os.environ[variable]}" + ("" if rank == variable else f", {rank}={_count(rank)}")
        raise ChipadaptError(
            f"an MPI launcher started {size}{'+' if variable == PMIX_RANK else ''} processes ({numbered}) but "
            f"{seen}, so each would run as a lone rank 0 writing the same folder; install mpi4py built against "
            f"the launcher's MPI, or launch with torchrun or srun (a process started alone inside an MPI job: "
            f"unset {variable})"
        )
    return world[0]


def _global_rank() -> int | None:
    """This process's global rank, read where Lightning reads it as it picks its cluster environment; None under
    Lightning's own launcher, which numbers a process by NODE_RANK and LOCAL_RANK."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torch.distributed.is_torchelastic_launched
        return _count("RANK")
    if "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in INTERACTIVE_SLURM_JOBS:
        return _count("SLURM_PROCID")
    if all(variable in os.environ for variable in LSF_VARIABLES):
        return _count("JSM_NAMESPACE_RANK")
    return _mpi_rank()


def _node_rank() -> int:
    """LightningEnvironment.node_rank: NODE_RANK, else torchelastic's GROUP_RANK."""
    return _count("NODE_RANK" if "NODE_RANK" in os.environ else "GROUP_RANK")


def _launcher_says_several() -> bool:
    sizes = ("WORLD_SIZE", "SLURM_NTASKS", "JSM_NAMESPACE_SIZE")
    return any(_count(variable) > 1 for variable in sizes) or _mpi_launch() is not None


# Remembered once seen: Lightning's own launcher deletes WORLD_SIZE when its strategy tears down after fit
# (LightningEnvironment.teardown), and a process it started would then pass for a lone one, writing manifest.json
# or taking rank 0's folder lock after training. Read at import too, which in a started process comes before fit.
_seen_several = _launcher_says_several()


def check_launch() -> None:
    """Refuse (a ChipadaptError) a process of an MPI launch that Lightning would run as a lone rank 0 beside the
    launcher's rank 0: asked once before a job's work, so that the refusal is its one line."""
    _global_rank()


def several_processes_launched() -> bool:
    global _seen_several
    _global_rank()  # refuses an MPI launch that Lightning would run as lone processes
    _seen_several = _seen_several or _launcher_says_several()
    return _seen_several


def _rank_above_0() -> bool:
    rank = _global_rank()
    if rank is not None:
        return rank > 0
    return _node_rank() > 0 or _count("LOCAL_RANK") > 0


def other_process_of_a_launch() -> bool:
    """One of several processes a launcher started, whose global rank is above 0."""
    return _count("LOCAL_RANK") > 0 or (several_processes_launched() and _rank_above_0())


def launched_as_global_zero() -> bool:
    """Whether this process is the one a launcher started as global rank 0, or a process that runs alone."""
    return not other_process_of_a_launch()


def rank_label() -> str:
    """This process's rank as its launcher gives it: the global rank (torchrun's RANK, srun's SLURM_PROCID, LSF's
    JSM_NAMESPACE_RANK, MPI's rank in COMM_WORLD), or, for a process Lightning's launcher started (no global rank in
    its environment), NODE_RANK-LOCAL_RANK where the node is not the first."""
    rank, local = _global_rank(), _count("LOCAL_RANK")
    if rank is not None and (rank > 0 or not local):
        return str(rank)
    node = _node_rank()
    return f"{node}-{local}" if node else str(local)
