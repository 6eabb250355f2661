"""A merge sweep run again in a sweep folder whose job folders hold merges of other settings, refused
before its first job.

`merge.py -m merge.lam=0,0.5,1 hydra.sweep.dir=S` and then `-m merge.lam=0,0.5,0.7,1` in the same S:
the second sweep's job 2 (lam=0.7) finds S/2/model, job 2 of the first sweep (lam=1). That job is
refused (merge/run.py, before it records anything), but only after the jobs before it ran, and the
sweep stops half done. Each job's config is composed here, as the sweeper will launch it, and the
sweep is refused at once where a job would meet a merged model of other settings at its `output`,
naming the job, its folder, what differs, and the ways out. A job whose folder records these very
settings is its own rerun (passed or resumed by the job, which then compares its input models by
content)."""

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.outputs import written_by
from chipadapt.merge.job_settings import changed_settings, same_settings
from chipadapt.sweep_job_folders import each_job, job_overrides

NAMED_CHANGES = 3  # changes named per job in a refusal; more are counted


def replaced_job(config: DictConfig, sweep: Path) -> str | None:
    """Why the first job of this sweep that would be refused for a merged model of other settings at its
    `output` would be; None where none would, or the jobs are not known beforehand (another sweeper: each
    job then refuses itself before it records anything)."""
    try:
        jobs = job_overrides(config)
    except Exception:  # noqa: BLE001 (a sweep this cannot expand: Hydra's sweeper reports it)
        return None
    if not jobs:
        return None
    shared = set.intersection(*(set(job) for job in jobs))  # the overrides every job has
    composed = each_job(config, sweep, jobs, _settings_of_job)
    for num, (overrides, (folder, job)) in enumerate(composed or []):
        if job is None or job.get("overwrite"):
            continue
        given = str(job.get("output") or "")
        out = Path(os.path.abspath(Path(given).expanduser()))  # `a/../b` is b, as the job folders are named
        if not given or not out.is_dir() or written_by(out) != "merge":
            continue  # nothing of merge.py's to replace; anything else there is refused by the job itself
        if _its_own_rerun(folder, job):
            continue
        changes = _changes(out, folder, job)
        if not changes:  # the same settings recorded by another run folder: the job says so itself
            continue
        inside = folder == out or folder in out.parents
        swept = [line for line in overrides if line not in shared]  # what this job's settings are named by
        named = f"job #{num} ({','.join(swept) or 'no overrides'})"
        keep = "another hydra.sweep.dir" if inside else "another output"
        return (
            f"{'hydra.sweep.dir' if inside else 'output'}: {named} would merge into {out}, which holds a merged "
            f"model of other settings ({changes}); {keep} keeps both, or overwrite=true replaces it"
        )
    return None


def _settings_of_job(job: DictConfig, folder: Path) -> tuple[Path, dict | None]:
    """(job folder, the job's resolved config as the job reads it, validated as the job validates it);
    None for a config the job itself will refuse."""
    from chipadapt.config_schema import validate

    try:
        own = OmegaConf.masked_copy(job, [key for key in job if key != "hydra"])
        validate(own)  # makes integral floats whole numbers, as in the job's record
        return folder, OmegaConf.to_container(own, resolve=True)
    except Exception:  # noqa: BLE001 (the job meets the problem and reports it in its own words)
        return folder, None


def _record(path: Path) -> dict | None:
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _its_own_rerun(folder: Path, job: dict) -> bool:
    recorded = _record(folder / "manifest.json")
    return bool(recorded) and recorded.get("kind") == "merge" and same_settings(recorded.get("config") or {}, job)


def _changes(out: Path, folder: Path, job: dict) -> str:
    """What the merged model at `out` was made with, against this job: by its own merge_manifest.json,
    else by the manifest of the job folder's earlier run."""
    recorded = _record(out / "merge_manifest.json") or _record(folder / "manifest.json") or {}
    changes = changed_settings(recorded.get("config") or {}, job) if recorded.get("config") else []
    more = f" and {len(changes) - NAMED_CHANGES} more" if len(changes) > NAMED_CHANGES else ""
    return "; ".join(changes[:NAMED_CHANGES]) + more
