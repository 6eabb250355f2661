"""The command line a job was started with, as the user typed it.

Never read from `sys.argv` alone: a job started by a submitit launcher (`hydra/launcher=submitit_local|
slurm`) runs in a worker whose argv is submitit's `_submit.py <folder>`, not the user's `train.py -m
...`. Trackers name runs after it, manifests record it, and a folder lock names its holder by it."""

import json
import os
import sys
from pathlib import Path

# The entry point's command line as the user typed it (JSON list: script name, then its arguments),
# set by the launching process (`record_command`). Environment variables reach the jobs of every
# launcher: Hydra's basic one runs them in-process, submitit's local workers inherit the environment
# and sbatch exports it to SLURM jobs by default.
COMMAND_ENV = "CHIPADAPT_COMMAND"


def record_command(argv: list[str]) -> None:
    """Called by every entry point before Hydra starts; replaces what a parent command recorded (a
    train.py started by reproduce.py is its own command)."""
    os.environ[COMMAND_ENV] = json.dumps([Path(argv[0]).name, *argv[1:]])


def launch_command() -> list[str]:
    """The command line that started this job: the recorded one, else this process's own."""
    try:
        recorded = json.loads(os.environ.get(COMMAND_ENV) or "null")
    except ValueError:
        recorded = None
    if isinstance(recorded, list) and recorded and all(isinstance(arg, str) for arg in recorded):
        return recorded
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
