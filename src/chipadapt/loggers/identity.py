"""Who a job is, for trackers: its name, its sweep and its kind, read from Hydra's runtime config.

A W&B run is named after the job's overrides (`optim.lr=1e-4`), grouped by the multirun it belongs
to (the sweep folder), and typed by the entry point (train / eval / merge), so a sweep shows up as
one group of runs whose names say what differs.

The command line is read from what the launching process recorded (io/command_line.py)."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from chipadapt.io.command_line import COMMAND_ENV, launch_command

# Hydra's config name of each entry point -> the W&B job type.
JOB_TYPES = {"train": "train", "evaluate": "eval", "merge": "merge", "chat": "chat", "reproduce": "reproduce"}


@dataclass(frozen=True)
class JobIdentity:
    name: str | None
    group: str | None
    job_type: str | None


def sweep_group(sweep_dir: str | Path, cwd: str | Path | None = None) -> str:
    """`multirun/2026-12-03/10-00-00` -> `2026-12-03_10-00-00_3f9a1c2e`: the folder and its parent, to
    read, and a hash of the folder's absolute path (relative ones taken from `cwd`, else the current
    folder), so that two sweeps never share a group: `/a/x/sweep` and `/b/x/sweep` both read `x_sweep`
    and were one group. A hash, not the path, goes to the tracker: it names no machine's folders."""
    sweep = Path(os.path.abspath(Path(cwd or os.getcwd(), sweep_dir)))
    readable = f"{sweep.parent.name}_{sweep.name}" if sweep.parent.name else sweep.name
    return f"{readable}_{hashlib.sha1(str(sweep).encode()).hexdigest()[:8]}"


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
        group = sweep_group(hydra.sweep.dir, hydra.runtime.cwd)  # the launching process's folder, as in a worker
        name = swept_overrides(list(hydra.overrides.task), sweep_overrides(hydra)) or name
    return JobIdentity(name, group, JOB_TYPES.get(hydra.job.config_name, hydra.job.config_name))
