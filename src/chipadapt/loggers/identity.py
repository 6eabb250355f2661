"""Who a job is, for trackers: its name, its sweep and its kind, read from Hydra's runtime config.

A W&B run is named after the job's overrides (`optim.lr=1e-4`), grouped by the multirun it belongs
to (the sweep folder), and typed by the entry point (train / eval / merge), so a sweep shows up as
one group of runs whose names say what differs.

The command line is read from what the launching process recorded, never from `sys.argv` alone: a
job started by a submitit launcher (`hydra/launcher=submitit_local|slurm`) runs in a worker whose
argv is submitit's `_submit.py <folder>`, not the user's `train.py -m ...`."""

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Hydra's config name of each entry point -> the W&B job type.
JOB_TYPES = {"train": "train", "evaluate": "eval", "merge": "merge", "chat": "chat", "reproduce": "reproduce"}

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


@dataclass(frozen=True)
class JobIdentity:
    name: str | None
    group: str | None
    job_type: str | None


def sweep_group(sweep_dir: str | Path) -> str:
    """`multirun/2026-12-03/10-00-00` -> `2026-12-03_10-00-00`: the folder and its parent, so sweeps
    started at the same time on different days stay apart."""
    sweep = Path(sweep_dir)
    return f"{sweep.parent.name}_{sweep.name}" if sweep.parent.name else sweep.name


def swept_overrides(job_overrides: list[str], command_line: list[str]) -> str:
    """What this job of a sweep varies: its overrides whose key the command line sweeps
    (`optim.lr=1e-4` from `optim.lr=1e-4,5e-6`) or does not set at all (a value a sweeper chose);
    the ones every job shares (`model=tiny`) would only make the names long and alike."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        given = OverridesParser.create().parse_overrides(
            [a for a in command_line if "=" in a and not a.startswith("-")]
        )
    except Exception:  # an argument Hydra's grammar rejects here: name the job by all its overrides
        return ",".join(job_overrides)
    fixed = {o.key_or_group for o in given if not o.is_sweep_override()}
    return ",".join(o for o in job_overrides if o.split("=", 1)[0].lstrip("+~") not in fixed)


def sweep_overrides(hydra) -> list[str]:
    """The overrides the sweep was started with (`optim.lr=1e-4,5e-6 model=tiny`): from the recorded
    command line, else from the `multirun.yaml` Hydra's basic sweeper writes into the sweep folder
    (a job whose launcher did not pass the environment on)."""
    if os.environ.get(COMMAND_ENV):
        return launch_command()[1:]
    from omegaconf import OmegaConf

    sweep = Path(hydra.runtime.cwd, hydra.sweep.dir) / "multirun.yaml"
    try:
        return [str(o) for o in OmegaConf.load(sweep).hydra.overrides.task]
    except Exception:  # noqa: BLE001 (no record at all: the name lists every override of the job)
        return []


def job_identity() -> JobIdentity:
    """The running Hydra job's identity; all None outside a Hydra job (tests composing in-process)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return JobIdentity(None, None, None)
    hydra = HydraConfig.get()
    name = hydra.job.override_dirname or Path(hydra.runtime.output_dir).name
    group = None
    if hydra.mode == RunMode.MULTIRUN:
        group = sweep_group(hydra.sweep.dir)
        name = swept_overrides(list(hydra.overrides.task), sweep_overrides(hydra)) or name
    return JobIdentity(name, group, JOB_TYPES.get(hydra.job.config_name, hydra.job.config_name))
