"""What one trial of a batch ended as, read from its own job folder, when the launch of the batch raised
(optuna_search.StudySweeper._run). A job that refuses its input exits 2, and Hydra's basic launcher lets
that SystemExit end the whole batch (a SLURM launcher raises for the first failed job the same way): the
values of the batch-mates that finished before are lost with it. Each trial's manifest still says how its
own job ended, so a completed batch-mate is told its value instead of being failed with the refused one."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError, TrainingDiverged
from chipadapt.io.lock_probe import folder_lock_held

WORST = {"minimize": math.inf, "maximize": -math.inf}  # what a diverged trial counts as (cli.worst_value)


@dataclass(frozen=True)
class Outcome:
    """`values` for a trial to tell; `running` for one a live process holds; else failed, `why`."""

    values: list[float] | None = None
    running: bool = False
    why: str = ""


def outcome(folder: Path, overrides: tuple[str, ...], metric: str, directions: list[str]) -> Outcome:
    """How the job launched with `overrides` in `folder` ended: its `metric` where it completed, the
    direction's worst value where its training diverged (as cli.run_job returns in a sweep), else failed."""
    if folder_lock_held(folder):
        return Outcome(running=True, why=f"a live process holds {folder}")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Outcome(why="its job recorded no run (refused before it began, or never started: the launch ended)")
    if not isinstance(manifest, dict) or not set(overrides) <= set(manifest.get("overrides") or []):
        # An earlier run's record (a refused job puts its folder's records back): not this trial's result.
        return Outcome(why=f"{folder / 'manifest.json'} records another run")
    status, error = manifest.get("status"), str(manifest.get("error") or "")
    if status == "failed" and error.startswith(f"{TrainingDiverged.__name__}:") and len(directions) == 1:
        return Outcome(values=[worst(directions[0])])
    if status != "completed":
        return Outcome(why=f"its job ended {status}" + (f" ({error})" if error else ""))
    metric = (manifest.get("config") or {}).get("optimized_metric") or metric  # the job's own
    if len(directions) != 1 or not metric:
        return Outcome(why="its value is not read back for a search of several objectives or no optimized_metric")
    from omegaconf import OmegaConf

    from chipadapt.optimized_metric import optimized_value

    try:  # read as the job itself read it before returning it
        value = optimized_value(OmegaConf.create({"optimized_metric": metric, "paths": {"output_dir": str(folder)}}))
    except ChipadaptError as err:
        return Outcome(why=str(err))
    # Non-finite (recorded as null): the worst value, as the job itself returns in a sweep.
    return Outcome(values=[worst(directions[0]) if value is None or math.isnan(value) else float(value)])


def worst(direction: str) -> float:
    return WORST[str(direction).lower()]
