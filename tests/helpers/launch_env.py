"""A process's launcher environment for rank tests: every variable io/launch_ranks reads, cleared, and then only
those a test names. One list for all: a test that cleared a part of it kept whatever the developer's shell set for
the rest (a PMI_RANK left by an MPI module, a SLURM_JOB_NAME), and that changed which process was rank 0."""

from chipadapt.io import launch_ranks

# Each launcher's rank and size, in the order launch_ranks reads them: torchrun, srun, LSF, MPI, Lightning's own.
LAUNCHER_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "RANK",
    "WORLD_SIZE",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_JOB_NAME",
    *launch_ranks.LSF_VARIABLES,
    "JSM_NAMESPACE_RANK",
    *(variable for pair in launch_ranks.MPI_LAUNCH_VARIABLES for variable in pair),
    launch_ranks.PMIX_RANK,
    "NODE_RANK",
    "GROUP_RANK",
    "LOCAL_RANK",
)


def launched_with(monkeypatch, **variables: str) -> None:
    """This process as a launcher started it with `variables` alone (none: a process started by hand). What it has
    seen of an earlier launch is forgotten too: launch_ranks remembers a launch of several processes once seen."""
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(launch_ranks, "_seen_several", False)
