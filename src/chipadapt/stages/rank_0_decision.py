"""Rank 0's answer to whether a distributed run resumes, taken by every other process. Each process used to
decide for itself, but the answer reads the folder as rank 0 found it (its last manifest, its lock): a process
started after rank 0 took the folder's lock and replaced its manifest read another folder and decided another
thing (rank 0 completing a stopped attempt from last.ckpt, the others starting over), and the processes hung
or trained apart. Rank 0 hands its answer on in the environment, which the processes Lightning starts
(trainer.devices=N) inherit, and in a file beside the checkpoints, which processes a launcher started
(torchrun, srun) wait for, told apart from an earlier launch's by the launcher's variables."""

import json
import os
import time
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic

DECISION_VARIABLE = "CHIPADAPT_RANK_0_RESUMES"
DECISION_FILE = ".rank_0_resumes.json"
# Set alike in every process of one launch, and different in the next: torchrun's and srun's.
LAUNCH_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_RESTART_COUNT",
)
# How long a process waits for rank 0's answer: rank 0 answers before it loads the model or the data.
WAIT_S = 600.0
POLL_S = 0.5


def launch() -> dict:
    return {key: os.environ[key] for key in LAUNCH_VARIABLES if os.environ.get(key)}


def record_rank_0_decision(out: Path, checkpoint: str | None, processes: int) -> None:
    """Rank 0, once it has decided: `checkpoint` resumed, or None (from step 0)."""
    decision = {"folder": str(out.resolve()), "checkpoint": checkpoint, "launch": launch()}
    os.environ[DECISION_VARIABLE] = json.dumps(decision)
    if processes > 1:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "checkpoints" / DECISION_FILE, decision)


def rank_0_decision(out: Path, wait_s: float | None = None) -> str | None:
    """Another process's answer: rank 0's, from the environment it inherited, else from the file of this launch,
    waited for; one line where rank 0 gives none in time."""
    folder = str(out.resolve())
    try:
        inherited = json.loads(os.environ.get(DECISION_VARIABLE) or "null")
    except ValueError:
        inherited = None
    if isinstance(inherited, dict) and inherited.get("folder") == folder:
        return inherited.get("checkpoint")
    path, this_launch = out / "checkpoints" / DECISION_FILE, launch()
    deadline = time.monotonic() + (WAIT_S if wait_s is None else wait_s)
    while True:
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict) and recorded.get("folder") == folder and recorded.get("launch") == this_launch:
            return recorded.get("checkpoint")
        if time.monotonic() >= deadline:
            raise ChipadaptError(
                f"{out}: rank 0 said within {WAIT_S if wait_s is None else wait_s:.0f} s neither whether it resumes "
                f"nor that it starts over ({path}); see its log for why it stopped"
            )
        time.sleep(POLL_S)
