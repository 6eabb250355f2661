"""What each trial of a batch ended as when the launch of the batch raised (optuna_search.StudySweeper._run),
read from its own job folder only (the one Hydra's hydra.sweep.subdir gives its job number), so that the
values of the batch-mates that finished are not lost with the launch. One rule for every raise:
- a folder whose manifest records this launch (exactly the trial's overrides, and this launch's id, which the
  search gives its jobs (launching); a record without one, of an earlier chipadapt, by its time: started at or
  after the launch, by the search host's clock within CLOCK_SKEW) says how the trial ended: completed (its value),
  diverged (the direction's worst value), failed (an ordinary exception: its own failure), running or
  interrupted (left RUNNING, to resume);
- a folder a live process holds is that process's: left RUNNING; so is one whose records change while they are
  read (settled_records: a requeued attempt taking the folder as the search reads it);
- a folder whose job of this launch refused its input before it recorded itself (exit 2,
  errors.USER_ERROR_STATUS; its refusal record, manifest.REFUSAL) says the trial failed, whichever launcher
  ran it (submitit's error does not give the job's exit status); so does one whose manifest of this launch
  still says running because the job refused after it (preempted and requeued by SLURM, its requeued
  attempt refused and put the first attempt's records back), where that manifest is still the one the refusal
  was recorded beside: an attempt requeued after the refusal that recorded itself, and was preempted and
  requeued again (not started yet), left RUNNING;
- a folder without a record of this launch: where Hydra's basic launcher ran the batch in the search
  process and a job refused its input (exit 2), that job ended the launch and the
  ones after it never started, so each such trial failed (the refused one and the never started alike; a
  rerun with the input fixed must not resume them with the refused settings). After anything else (an
  interrupt, or an error of a launcher that runs jobs elsewhere, such as submitit's UncompletedJobError
  under hydra/launcher=slurm, whose other jobs may still be queued) such a trial is uncertain: left
  RUNNING for the next run of the search to resume (optuna_resume.left_to_its_process decides when)."""

import datetime as dt
import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import USER_ERROR_STATUS, ChipadaptError, TrainingDiverged, worst_for
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.manifest import LAUNCH_ENV, REFUSAL, recorded_time

STILL_RUNNING = ("running", "interrupted")  # manifest statuses of a job that may resume or still runs
# A record's time is written by the host that ran the job (a SLURM node, under submitit) and compared with the
# search host's launch time: a record up to this much earlier is still this launch's (an earlier command's
# is told apart by its start time, besides its exact overrides). An aware time (UTC) differs by the clocks'
# skew alone; a naive one (a manifest written before `started` was in UTC) is read as the search host's local
# time, and its 2 minutes cover clock drift only: a node in a zone behind the search host that wrote naive
# times is not recognised as this launch's. Both only for records without a launch id (an earlier chipadapt's):
# a record with one is this launch's exactly where its id is this launch's.
CLOCK_SKEW = dt.timedelta(seconds=30)
CLOCK_TOLERANCE = dt.timedelta(minutes=2)
# Reads of a folder's records around its lock probe before a folder whose records keep changing is left to the
# process writing them (settled_records).
SETTLE_READS = 3
LAUNCH = "chipadapt_launch"  # a trial's user attribute: the id of its last launch (launching), which its records carry


@dataclass(frozen=True)
class Outcome:
    """`values` for a trial to tell; `running` for one to leave RUNNING; else failed, `why`."""

    values: list[float] | None = None
    running: bool = False
    why: str = ""


@dataclass(frozen=True)
class Launched:
    """A trial of the batch: its number, its job folder (hydra.sweep.subdir) and the overrides it was launched with."""

    number: int
    folder: Path | None  # None: hydra.sweep.subdir names it only when the job runs (optuna_search.job_folder)
    overrides: tuple[str, ...]


def new_launch() -> str:
    return uuid.uuid4().hex


@contextmanager
def launching(launch: str) -> Iterator[None]:
    """While a launcher starts (and, for Hydra's basic launcher, runs) the jobs of a launch: its id in the
    environment the jobs inherit (manifest.LAUNCH_ENV), taken back after, so that no later job of this process
    records it."""
    before = os.environ.get(LAUNCH_ENV)
    os.environ[LAUNCH_ENV] = launch
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LAUNCH_ENV, None)
        else:
            os.environ[LAUNCH_ENV] = before


def launch_time() -> dt.datetime:
    """Taken before a launch (aware, so that a manifest's time can be compared whatever its host's zone)."""
    return dt.datetime.now().astimezone().replace(microsecond=0)


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, ChipadaptError) or (isinstance(err, SystemExit) and err.code == USER_ERROR_STATUS)


def batch_outcomes(
    err: BaseException,
    batch: list[Launched],
    jobs_here: bool,
    since: dt.datetime,
    metric: str,
    directions: list,
    launch: str | None = None,
) -> list[Outcome]:
    """Each trial's outcome after the launch `launch` (its id; None: known by `since` alone) raised `err`, in
    batch order; `jobs_here`: Hydra's basic launcher ran the batch's jobs one after the other in this process."""
    refused = jobs_here and is_user_error(err)
    unrecorded = (
        Outcome(
            why="its folder records no run of this launch: refused (exit 2), or never started once a refusal ended it"
        )
        if refused
        else Outcome(running=True, why="its folder records no end of this launch (its job may be queued still)")
    )
    return [outcome(t, since, metric, directions, launch) or unrecorded for t in batch]


def read_manifest(folder: Path, name: str = "manifest.json") -> dict | None:
    try:
        manifest = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def this_launch(
    manifest: dict | None,
    overrides: tuple[str, ...],
    since: dt.datetime,
    at: str = "started",
    launch: str | None = None,
) -> bool:
    """Whether `manifest` records the job launched at `since` (by the search host's clock) with exactly
    `overrides`: by the launch's id `launch` where both the record and the search know one, else by its time
    `at`: not earlier than `since` by more than CLOCK_SKEW for an aware time, or CLOCK_TOLERANCE for a naive one
    (taken as this host's local time)."""
    if manifest is None or sorted(map(str, manifest.get("overrides") or [])) != sorted(overrides):
        return False
    recorded = manifest.get("launch")
    if launch and recorded:  # whatever the clocks of the hosts say: an earlier launch's record has another id
        return str(recorded) == launch
    try:
        started = dt.datetime.fromisoformat(str(manifest.get(at)))
    except ValueError:
        return False
    tolerance = CLOCK_SKEW if started.tzinfo else CLOCK_TOLERANCE
    return started.astimezone() >= since - tolerance


def settled_records(folder: Path) -> tuple[dict | None, dict | None] | None:
    """`folder`'s manifest and refusal record as they stand while no live process holds the folder: read, the
    lock probed, read again, the lock probed again, taken where both reads agree and neither probe found the lock
    held. None where a live process holds the folder, or the records changed while read (SETTLE_READS times): an
    attempt is writing them. An attempt (a job requeued by `scontrol requeue`) takes the folder's lock, then
    writes its manifest (after RunManifest's git subprocesses): one that did both after a probe made before the
    reads left the search reading the manifest of the attempt before it beside a newer refusal record, and one
    that took the lock after the probe between the reads and wrote its manifest after the second read was
    unseen too; either way the search failed the trial the new attempt runs. The probe after the second read
    finds that attempt holding the lock."""
    for _ in range(SETTLE_READS):
        records = read_manifest(folder), read_manifest(folder, REFUSAL)
        if folder_lock_held(folder):
            return None
        again = read_manifest(folder), read_manifest(folder, REFUSAL)
        if folder_lock_held(folder):
            return None
        if again == records:
            return records
    return None


def refused_after(
    refusal: dict | None,
    overrides: tuple[str, ...],
    since: dt.datetime,
    manifest: dict | None,
    launch: str | None = None,
) -> bool:
    """Whether the refusal record `refusal` is of the job launched at `since` with `overrides` (this_launch) and
    no attempt recorded itself there after it: `manifest`, the folder's, is the one the refusal was recorded
    beside (its `attempt` id, or its `started` where either record has no id, as the refusal names it), or, for
    a refusal that names none (an earlier chipadapt's), started no later than the refusal. Both from one reading
    of the folder (settled_records). By the clocks, an attempt requeued after the refusal onto a node whose clock
    is behind the refused one's, and preempted and requeued again, looked as if it had started before the
    refusal: its trial failed while its job waited to start again."""
    if not this_launch(refusal, overrides, since, "refused", launch):
        return False
    # The manifest the refusal names, by its attempt id where the refusal records one (None: a manifest without
    # one, of an earlier chipadapt, or none), and by its `started`, which alone tells a refusal recorded before
    # attempt ids (two attempts can share that second).
    named = {key: refusal[f"manifest_{key}"] for key in ("attempt", "started") if f"manifest_{key}" in refusal}
    if named:
        return all((manifest or {}).get(key) == value for key, value in named.items())
    refused = recorded_time(refusal.get("refused"))
    started = recorded_time((manifest or {}).get("started"))
    return refused is not None and (started is None or started <= refused)


def refused_since(folder: Path, overrides: tuple[str, ...], since: dt.datetime, launch: str | None = None) -> bool:
    """Whether the job last launched into `folder` with `overrides` after `since` (when its trial was asked,
    by the search host's clock), of the launch `launch` where its trial records one, refused its input, and
    nothing ran there since: no live process holds the folder and no attempt recorded itself after the refusal."""
    records = settled_records(folder)
    return records is not None and refused_after(records[1], overrides, since, records[0], launch)


def outcome(
    trial: Launched, since: dt.datetime, metric: str, directions: list, launch: str | None = None
) -> Outcome | None:
    """How the trial's job of this launch ended, as its folder says: its `metric` where it completed, the
    direction's worst value where its training diverged (as cli.run_job returns in a sweep), RUNNING where a
    live process holds the folder or the job was interrupted (it resumes), failed where it failed or refused
    its input after it recorded itself; None where the folder holds no record of this launch."""
    folder = trial.folder
    if folder is None:
        return None
    records = settled_records(folder)
    if records is None:
        return Outcome(running=True, why=f"a live process holds {folder} (or is writing its records)")
    manifest, refusal = records
    refused = Outcome(why="its job refused its input (exit 2; its log says why)")
    if not this_launch(manifest, trial.overrides, since, launch=launch):
        return refused if refused_after(refusal, trial.overrides, since, manifest, launch) else None
    status, error = manifest.get("status"), str(manifest.get("error") or "")
    config = manifest.get("config") or {}
    if not isinstance(config, dict):
        return Outcome(why=f"{folder / 'manifest.json'} is unreadable: its `config` is not a mapping")
    if status in STILL_RUNNING:
        # a requeued attempt that refused put back the records of the one that wrote this manifest
        if refused_after(refusal, trial.overrides, since, manifest, launch):
            return refused
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
