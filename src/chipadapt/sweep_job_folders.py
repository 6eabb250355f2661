"""The folder each job of a sweep will write into, known before the first job starts.

Hydra's basic sweeper lists every job (the product of the swept values) before it launches any; each
job then writes into `hydra.sweep.dir/<hydra.sweep.subdir>`, the subdir resolved in that job's own
config. With the default subdir (`${hydra.job.num}`) every job has a folder of its own, but a subdir
named after a setting the jobs share (`hydra.sweep.subdir=${data.seq_len}` in an lr sweep) sends
several jobs into one folder, where the second finds the first one's model. Other sweepers (Optuna)
draw their jobs as they go: their folders are not known beforehand."""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
NUMBERED = "${hydra.job.num}"
MAX_COMPOSED = (
    512  # jobs whose config is composed to resolve their subdir or output (a few hundredths of a second each)
)
T = TypeVar("T")
# How a config names the running job's own folder (merge.py's and compare.py's default output).
JOB_FOLDER = ("${hydra:runtime.output_dir}", "${paths.output_dir}")


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
    jobs = _listed_jobs(config)
    if jobs is None:
        return None
    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
    if subdir == NUMBERED:  # the default: no composition needed
        return [(job, sweep / str(num)) for num, job in enumerate(jobs)]
    if "now:" in subdir:
        return None
    return each_job(config, sweep, jobs, lambda job, folder: folder)


def job_outputs(config: DictConfig, sweep: Path, key: str) -> list[tuple[list[str], Path]] | None:
    """(overrides, the path `key` resolves to) of each job of the sweep that sets `key` (merge.py's and
    export.py's `output`), in job order, resolved in each job's own config as the job will resolve it
    (`output=models/merged_${merge.lam}` differs per job, `${hydra:runtime.output_dir}/model` is in each
    job's folder); None where the jobs are not known beforehand (see job_folders)."""
    named = any(line.split("=", 1)[0].lstrip("+~") == key for line in _task_overrides(config))
    if not named and (_unresolved(config, key) is None or _inside_the_job_folder(_unresolved(config, key))):
        # No job writes there, or each writes inside its own folder (merge.py's default): nothing to
        # compose. A swept config group (`experiment=a,b`) that sets `key` is not looked into.
        return []
    jobs = _listed_jobs(config)
    if jobs is None:
        return None

    def output_of(job: DictConfig, _folder: Path) -> Path | None:
        value = OmegaConf.select(job, key, default=None, throw_on_missing=False)
        return Path(os.path.abspath(Path(str(value)).expanduser())) if value not in (None, "") else None

    outputs = each_job(config, sweep, jobs, output_of)
    if outputs is None:
        return None
    return [(overrides, output) for overrides, output in outputs if output is not None]


def drawn_jobs_share(config: DictConfig, key: str) -> str | None:
    """The path `key` was given on the command line where every job of a sweep that draws its jobs as it
    goes (an Optuna search) writes there: a plain path (no interpolation that could differ per job), not
    among the sweeper's params, and more than one trial. None otherwise."""
    sweeper = config.hydra.get("sweeper")
    if not isinstance(sweeper, DictConfig) or sweeper.get("_target_") == BASIC_SWEEPER:
        return None
    if key in (sweeper.get("params") or {}) or str(sweeper.get("n_trials", 2)) in ("0", "1"):
        return None
    given = [line.split("=", 1)[1] for line in _task_overrides(config) if line.split("=", 1)[0] == key]
    if not given or "${" in given[-1] or given[-1] in ("", "null"):
        return None
    return given[-1]


def _unresolved(config: DictConfig, key: str):
    """The value of `key` as written (an interpolation unresolved); None where it is unset or null."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(config, parent_key, default=None) if parent_key else config
    if not isinstance(parent, DictConfig):
        return None
    return OmegaConf.to_container(parent, resolve=False).get(leaf)


def _inside_the_job_folder(value) -> bool:
    """`value` as written names a path inside the running job's folder, whatever else it holds."""
    text = str(value)
    return text.startswith(JOB_FOLDER) and ".." not in text


def _task_overrides(config: DictConfig) -> list[str]:
    return [str(line) for line in OmegaConf.to_container(config.hydra.overrides.task)]


def _listed_jobs(config: DictConfig) -> list[list[str]] | None:
    try:
        return job_overrides(config)
    except Exception:  # noqa: BLE001 (a sweep this cannot expand: Hydra's sweeper reports it)
        log.debug("sweep jobs not listed before the sweep", exc_info=True)
        return None


def each_job(
    config: DictConfig, sweep: Path, jobs: list[list[str]], read: Callable[[DictConfig, Path], T]
) -> list[tuple[list[str], T]] | None:
    """(overrides, `read(job config, job folder)`) of each job, its config composed and its Hydra node
    set as Hydra's launcher and run_job set them before the job's code runs (`hydra.job.num`, then
    `hydra.runtime.output_dir`, which `${hydra:runtime.output_dir}` reads); None where a job cannot be
    composed or read (that job meets the problem and reports it in its own words), or there are more
    jobs than are worth composing."""
    if len(jobs) > MAX_COMPOSED or not GlobalHydra.instance().is_initialized():
        return None
    loader = GlobalHydra.instance().config_loader()
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    found = []
    try:
        for num, overrides in enumerate(jobs):
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):
                job.hydra.job.id = num
                job.hydra.job.num = num
            hydra_config.set_config(job)
            folder = Path(os.path.abspath(sweep / str(OmegaConf.select(job, "hydra.sweep.subdir"))))  # `a/../b` is b
            with read_write(job.hydra.runtime), open_dict(job.hydra.runtime):
                job.hydra.runtime.output_dir = str(folder)
            hydra_config.set_config(job)
            found.append((overrides, read(job, folder)))
    except Exception:  # noqa: BLE001 (the job meets it, and reports it in its own words)
        log.debug("sweep jobs not resolved before the sweep", exc_info=True)
        return None
    finally:
        hydra_config.cfg = previous
    return found


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
