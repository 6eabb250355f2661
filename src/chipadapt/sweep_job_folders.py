"""The folder each job of a sweep will write into, known before the first job starts.

Hydra's basic sweeper lists every job (the product of the swept values) before it launches any; each
job then writes into `hydra.sweep.dir/<hydra.sweep.subdir>`, the subdir resolved in that job's own
config. With the default subdir (`${hydra.job.num}`) every job has a folder of its own, but a subdir
named after a setting the jobs share (`hydra.sweep.subdir=${data.seq_len}` in an lr sweep) sends
several jobs into one folder, where the second finds the first one's model. Other sweepers (Optuna)
draw their jobs as they go: their folders are not known beforehand."""

import logging
import os
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
NUMBERED = "${hydra.job.num}"
MAX_COMPOSED = 512  # jobs whose config is composed to resolve their subdir (a few hundredths of a second each)


def job_overrides(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides, in the basic sweeper's order (the job numbers); None for another sweeper."""
    sweeper = config.hydra.get("sweeper")
    if not isinstance(sweeper, DictConfig) or sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    hydra = GlobalHydra.instance()
    loader = hydra.config_loader() if hydra.is_initialized() else None
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    arguments = [*params, *OmegaConf.to_container(config.hydra.overrides.task)]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def job_folders(config: DictConfig, sweep: Path) -> list[tuple[list[str], Path]] | None:
    """(overrides, folder) of each job of the sweep `config` starts, in job order; None where the jobs or
    their folders are not known beforehand: another sweeper, a subdir read from the clock (`${now:...}`
    resolves when each job starts), more jobs than are worth composing, or a job Hydra cannot compose
    (that job reports it itself)."""
    try:
        jobs = job_overrides(config)
    except Exception:  # noqa: BLE001 (a sweep this cannot expand: Hydra's sweeper reports it)
        log.debug("sweep jobs not listed before the sweep", exc_info=True)
        return None
    if jobs is None:
        return None
    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
    if subdir == NUMBERED:  # the default: no composition needed
        return [(job, sweep / str(num)) for num, job in enumerate(jobs)]
    if "now:" in subdir or len(jobs) > MAX_COMPOSED or not GlobalHydra.instance().is_initialized():
        return None
    loader = GlobalHydra.instance().config_loader()
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    folders = []
    try:
        for num, overrides in enumerate(jobs):
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):  # what Hydra's launcher sets before the job's subdir is resolved
                job.hydra.job.id = num
                job.hydra.job.num = num
            hydra_config.set_config(job)
            subdir_of_job = str(OmegaConf.select(job, "hydra.sweep.subdir"))
            folders.append((overrides, Path(os.path.abspath(sweep / subdir_of_job))))  # `a/../b` is b
    except Exception:  # noqa: BLE001 (the job meets it, and reports it in its own words)
        log.debug("sweep job folders not resolved before the sweep", exc_info=True)
        return None
    finally:
        hydra_config.cfg = previous
    return folders


def shared_folder(folders: list[tuple[list[str], Path]]) -> tuple[int, int, Path] | None:
    """The first two jobs (by number) that would write into one folder, and that folder; None if none."""
    first: dict[Path, int] = {}
    for num, (_, folder) in enumerate(folders):
        if folder in first:
            return first[folder], num, folder
        first[folder] = num
    return None


def differences(a: list[str], b: list[str]) -> tuple[str, str]:
    """What sets two jobs apart: the overrides of each that the other does not have."""
    return ",".join(o for o in a if o not in b), ",".join(o for o in b if o not in a)
