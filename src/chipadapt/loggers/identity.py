"""Who a job is, for trackers: its name, its sweep and its kind, read from Hydra's runtime config.

A W&B run is named after the job's overrides (`optim.lr=1e-4`), grouped by the multirun it belongs
to (the sweep folder), and typed by the entry point (train / eval / merge), so a sweep shows up as
one group of runs whose names say what differs."""

from dataclasses import dataclass
from pathlib import Path

# Hydra's config name of each entry point -> the W&B job type.
JOB_TYPES = {"train": "train", "evaluate": "eval", "merge": "merge", "chat": "chat", "reproduce": "reproduce"}


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


def job_identity() -> JobIdentity:
    """The running Hydra job's identity; all None outside a Hydra job (tests composing in-process)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return JobIdentity(None, None, None)
    hydra = HydraConfig.get()
    name = hydra.job.override_dirname or Path(hydra.runtime.output_dir).name
    group = sweep_group(hydra.sweep.dir) if hydra.mode == RunMode.MULTIRUN else None
    return JobIdentity(name, group, JOB_TYPES.get(hydra.job.config_name, hydra.job.config_name))
