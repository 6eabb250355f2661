"""What each trial of a batch ended as when the launch of the batch raised (optuna_search.StudySweeper._run),
read from its own job folder: the values of the batch-mates that finished are not lost with the launch.
- A job that refused its input exits 2 (cli.USER_ERROR_STATUS). Hydra's basic launcher runs the batch's
  jobs one after the other in the search process and that SystemExit ends the launch: the trials before
  the refusing one ended as their folders say, the refusing one failed (unless a live process holds its
  folder: refused as in use, it is that process's), and the ones after it never started: failed.
- A launcher that runs jobs elsewhere (hydra/launcher=slurm: submitit) raises its own error for the first
  failed job (submitit's UncompletedJobError, a RuntimeError), whatever the job's exit status: each trial
  is then told what its own folder says.
- An interrupt (Ctrl-C or SIGTERM: cli.py exits 128+signal, or KeyboardInterrupt) is none of these: the
  batch's trials stay RUNNING and the next run of the search resumes them from their checkpoints.
A folder's manifest counts only when it records this launch: its overrides are exactly the trial's and it
started at or after the launch (a folder keeps an earlier command's manifest where a job refused)."""

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

from chipadapt.cli import USER_ERROR_STATUS, worst_for
from chipadapt.errors import ChipadaptError, TrainingDiverged
from chipadapt.io.lock_probe import folder_lock_held

STILL_RUNNING = ("running", "interrupted")  # manifest statuses of a job that may resume or still runs


@dataclass(frozen=True)
class Outcome:
    """`values` for a trial to tell; `running` for one to leave RUNNING; else failed, `why`."""

    values: list[float] | None = None
    running: bool = False
    why: str = ""


@dataclass(frozen=True)
class Launched:
    """A trial of the batch: its number, the folder recorded for it and the overrides it was launched with."""

    number: int
    folder: Path
    overrides: tuple[str, ...]


def launch_time() -> dt.datetime:
    """Taken before a launch; whole seconds, local time, as manifest.json's `started`."""
    return dt.datetime.now().replace(microsecond=0)


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, ChipadaptError) or (isinstance(err, SystemExit) and err.code == USER_ERROR_STATUS)


def batch_outcomes(
    err: BaseException, batch: list[Launched], sweep_dir: Path, since: dt.datetime, metric: str, directions: list[str]
) -> list[Outcome] | None:
    """Each trial's outcome after the launch raised `err`, in batch order; None where every trial stays
    RUNNING (an interrupt, or an exit status other than a refusal)."""
    if isinstance(err, SystemExit) and not is_user_error(err):
        return None
    if not isinstance(err, Exception | SystemExit):  # KeyboardInterrupt, chipadapt.interrupts.Interrupted
        return None
    taken = {t.folder for t in batch}  # a batch-mate of the same parameters has its own folder
    ended = [outcome(trial_folder(t, sweep_dir, since, taken), t.overrides, metric, directions, since) for t in batch]
    if not is_user_error(err):
        return ended
    # In order: the trials before the refusing one ended as their folders say; the ones after never started.
    refused = next((i for i, o in enumerate(ended) if o.values is None and not o.running), len(ended))
    told = ended[: refused + 1]  # the refusing one: failed, as its folder says (no record of this launch)
    never = f"never started: the launch ended when trial #{batch[min(refused, len(batch) - 1)].number} was refused"
    told += [o if o.running else Outcome(why=never) for o in ended[refused + 1 :]]
    return told


def trial_folder(trial: Launched, sweep_dir: Path, since: dt.datetime, taken: set[Path]) -> Path:
    """The folder recorded for the trial, or, where that holds no record of this launch, the sweep folder's
    one that does and is no other trial's (a hydra.sweep.subdir other than the job number names it otherwise)."""
    if this_launch(read_manifest(trial.folder), trial.overrides, since):
        return trial.folder
    for manifest in [*sweep_dir.glob("*/manifest.json"), *sweep_dir.glob("*/*/manifest.json")]:
        if manifest.parent not in taken and this_launch(read_manifest(manifest.parent), trial.overrides, since):
            return manifest.parent
    return trial.folder


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def this_launch(manifest: dict | None, overrides: tuple[str, ...], since: dt.datetime) -> bool:
    """Whether `manifest` records the job launched at `since` with exactly `overrides`."""
    if manifest is None or sorted(map(str, manifest.get("overrides") or [])) != sorted(overrides):
        return False
    try:
        return dt.datetime.fromisoformat(str(manifest.get("started"))) >= since
    except ValueError:
        return False


def outcome(
    folder: Path, overrides: tuple[str, ...], metric: str, directions: list[str], since: dt.datetime
) -> Outcome:
    """How the job launched with `overrides` in `folder` at `since` ended: its `metric` where it completed,
    the direction's worst value where its training diverged (as cli.run_job returns in a sweep), RUNNING
    where a live process holds the folder or the job was interrupted (it resumes), else failed."""
    if folder_lock_held(folder):
        return Outcome(running=True, why=f"a live process holds {folder}")
    manifest = read_manifest(folder)
    if manifest is None:
        return Outcome(why="its job recorded no run (refused before it began, or never started: the launch ended)")
    if not this_launch(manifest, overrides, since):
        return Outcome(why=f"{folder / 'manifest.json'} records another run (other overrides, or an earlier start)")
    status, error = manifest.get("status"), str(manifest.get("error") or "")
    config = manifest.get("config") or {}
    if not isinstance(config, dict):
        return Outcome(why=f"{folder / 'manifest.json'} is unreadable: its `config` is not a mapping")
    if status in STILL_RUNNING:
        return Outcome(running=True, why=f"its job was {status} (left RUNNING: the next run resumes it)")
    # job.recorded_job records a failure as "<exception class>: <message>"
    if status == "failed" and error.split(":", 1)[0] == TrainingDiverged.__name__ and len(directions) == 1:
        return Outcome(values=worst_for(directions))
    if status != "completed":
        return Outcome(why=f"its job ended {status}" + (f" ({error})" if error else ""))
    metric = config.get("optimized_metric") or metric  # the job's own
    if len(directions) != 1 or not metric:
        return Outcome(why="its value is not read back for a search of several objectives or no optimized_metric")
    from omegaconf import OmegaConf

    from chipadapt.optimized_metric import optimized_value

    try:  # read as the job itself read it before returning it
        value = optimized_value(OmegaConf.create({"optimized_metric": metric, "paths": {"output_dir": str(folder)}}))
    except ChipadaptError as err:
        return Outcome(why=str(err))
    # Non-finite (recorded as null): the worst value, as the job itself returns in a sweep.
    return Outcome(values=worst_for(directions) if value is None or math.isnan(value) else [float(value)])
