"""Whether this process is one of several a launcher started, and not the first: the process that leaves the run's
record to rank 0. io/lock.is_secondary_rank reads any rank variable above 0, which a cluster may set for every
process (NODE_RANK on the nodes of a multi-node allocation, SLURM_PROCID of a job step): a lone evaluate.py,
merge.py or train.py there was taken for a worker of a distributed run and wrote no manifest, or waited for a rank 0
that never came. Several processes are what a launcher says it started: torchrun's (and Lightning's own
launcher's) WORLD_SIZE, srun's SLURM_NTASKS."""

import os

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")


def _count(variable: str) -> int:
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() else 0


def _launcher_says_several() -> bool:
    return _count("WORLD_SIZE") > 1 or _count("SLURM_NTASKS") > 1


# Remembered once seen: Lightning's own launcher deletes WORLD_SIZE when its strategy tears down after fit
# (LightningEnvironment.teardown), and a process it started would then pass for a lone one, writing manifest.json
# or taking rank 0's folder lock after training. Read at import too, which in a started process comes before fit.
_seen_several = _launcher_says_several()


def several_processes_launched() -> bool:
    global _seen_several
    _seen_several = _seen_several or _launcher_says_several()
    return _seen_several


def other_process_of_a_launch() -> bool:
    """One of several processes a launcher started, whose global rank is above 0."""
    return several_processes_launched() and any(_count(variable) > 0 for variable in RANK_VARIABLES)


def rank_label() -> str:
    """This process's rank as its launcher gives it: the global rank (torchrun's RANK, srun's SLURM_PROCID), or,
    for a process Lightning's launcher started (no global rank in its environment), NODE_RANK-LOCAL_RANK where the
    node is not the first."""
    for variable in ("RANK", "SLURM_PROCID"):
        if _count(variable) > 0:
            return str(_count(variable))
    node, local = _count("NODE_RANK"), _count("LOCAL_RANK")
    return f"{node}-{local}" if node else str(local)
