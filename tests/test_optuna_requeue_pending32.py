"""A trial whose job SLURM requeued and has not started again yet, read by the search (optuna_trial_outcome.py). Its
folder then holds the records of the attempts before and no lock holder. The search told its launch's records, and
whether an attempt ran after a refusal, by the times the hosts wrote: an attempt requeued after a refusal onto a node
whose clock is behind the refused one's, then preempted and requeued again, looked as if it had started before the
refusal, and an earlier launch's refusal within the clock tolerance looked like this launch's. Either way the trial
failed while its job waited to start. Now each launch has an id its jobs' records carry, and a refusal names the
manifest it was recorded beside."""

import datetime as dt
import json
import os
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from test_optuna_refused_job import search_of_two

from chipadapt import manifest as manifest_module
from chipadapt.manifest import LAUNCH_ENV, REFUSAL, RunManifest, record_refusal
from chipadapt.optuna_trial_outcome import (
    LAUNCH,
    Launched,
    launch_time,
    launching,
    new_launch,
    outcome,
    refused_after,
    refused_since,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
OVERRIDES = ("optim.lr=0.1",)


def states(storage: str) -> list[str]:
    return [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials]


def as_job(monkeypatch, folder: Path, overrides) -> None:
    """Make the current Hydra job the sweep job in `folder` launched with `overrides`, as its process sees it."""
    hydra = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(folder)), mode=RunMode.MULTIRUN)
    hydra.overrides = SimpleNamespace(task=list(overrides))
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hydra))


def on_a_clock(monkeypatch, at: dt.datetime) -> None:
    """The next records are written on a host whose clock reads `at`."""
    monkeypatch.setattr(manifest_module, "utc_now", lambda: at.astimezone(dt.UTC).isoformat(timespec="seconds"))


def preempted(folder: Path) -> None:
    """An attempt that recorded itself, and was stopped by SLURM's warning signal and requeued."""
    RunManifest(folder, OmegaConf.create({}), "train").finish("interrupted", error="stopped by SIGUSR2")


def attempts_until_requeued_on_a_node_behind(monkeypatch, folder: Path, overrides, now: dt.datetime) -> None:
    """The first attempt is preempted; the second refuses its input (it puts the folder's records back); the user
    fixes the input and requeues the job by hand; the third runs on a node whose clock is a minute behind, is
    preempted and requeued in turn, and has not started again."""
    folder.mkdir(parents=True, exist_ok=True)
    as_job(monkeypatch, folder, overrides)
    on_a_clock(monkeypatch, now + dt.timedelta(seconds=10))
    preempted(folder)
    on_a_clock(monkeypatch, now + dt.timedelta(seconds=100))
    record_refusal()
    on_a_clock(monkeypatch, now + dt.timedelta(seconds=130 - 60))
    preempted(folder)


def uncompleted(number: int):
    pytest.importorskip("submitit")
    from submitit.core.utils import UncompletedJobError

    return UncompletedJobError(f"Job 7_{number} has not produced any output (state: FAILED)\nError stream:\n...")


def test_a_job_requeued_after_a_refusal_onto_a_node_behind_is_left_running_by_this_search_and_the_next(
    tmp_path, monkeypatch
):
    launched = []

    def jobs(overrides, initial_job_idx):  # job 0 requeued, waiting to start; job 1 failed
        launched.append(os.environ.get(LAUNCH_ENV))
        now = dt.datetime.now(dt.UTC)
        attempts_until_requeued_on_a_node_behind(monkeypatch, tmp_path / "sweep" / "0", overrides[0], now)
        raise uncompleted(1)

    search, storage = search_of_two(tmp_path, jobs)
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    assert states(storage) == ["RUNNING", "RUNNING"]  # before: ["FAIL", "RUNNING"]
    folder = tmp_path / "sweep" / "0"
    records = [json.loads((folder / name).read_text()) for name in ("manifest.json", REFUSAL)]
    trial = optuna.load_study(study_name="dapt", storage=storage).trials[0]
    assert launched[0] and LAUNCH_ENV not in os.environ  # set for the launch only
    assert {record["launch"] for record in records} == {launched[0]} == {trial.user_attrs[LAUNCH]}
    assert records[1]["manifest_started"] != records[0]["started"]  # the refusal was recorded beside another
    monkeypatch.undo()  # the search process again, with its own clock

    def complete(overrides, initial_job_idx):
        return [SimpleNamespace(return_value=0.5) for _ in overrides]

    again, _ = search_of_two(tmp_path, complete)  # the next run of the search reads the RUNNING trials' folders
    again.sweep(again.arguments)
    assert states(storage) == ["RUNNING", "RUNNING"]  # before: ["FAIL", "RUNNING", "COMPLETE"]


def test_a_refusal_the_requeued_attempt_left_beside_the_manifest_still_fails_its_trial(tmp_path, monkeypatch):
    """The refusal was the last attempt: the folder's manifest is the one it was recorded beside."""
    since, launch, folder = launch_time(), new_launch(), tmp_path / "0"
    folder.mkdir()
    with launching(launch):
        as_job(monkeypatch, folder, OVERRIDES)
        on_a_clock(monkeypatch, since + dt.timedelta(seconds=10))
        preempted(folder)
        on_a_clock(monkeypatch, since + dt.timedelta(seconds=5))  # on a node behind: before the manifest, by clocks
        record_refusal()
    told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"], launch)
    assert told is not None and not told.running and "refused" in told.why
    assert refused_since(folder, OVERRIDES, since - dt.timedelta(minutes=1), launch)


def test_an_earlier_launchs_refusal_within_the_clock_tolerance_is_not_this_launchs(tmp_path, monkeypatch):
    """This launch's job is queued (or requeued) and has recorded nothing; the refusal of the launch before it, in
    the same folder with the same overrides, was written seconds before this launch by the search host's clock."""
    since, folder = launch_time(), tmp_path / "0"
    folder.mkdir()
    with launching(new_launch()):
        as_job(monkeypatch, folder, OVERRIDES)
        on_a_clock(monkeypatch, since - dt.timedelta(seconds=10))
        record_refusal()
    this = new_launch()
    assert outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"], this) is None
    assert not refused_since(folder, OVERRIDES, since - dt.timedelta(minutes=1), this)


@pytest.mark.parametrize("started_s, failed", [(10, True), (30, False)], ids=["before the refusal", "after it"])
def test_records_without_a_launch_id_are_told_by_their_times_as_before(tmp_path, started_s, failed):
    """Folders an earlier chipadapt wrote: no `launch`, no `manifest_started`; no KeyError, the same outcome."""
    since = launch_time() - dt.timedelta(minutes=1)

    def at(seconds: float) -> str:
        return (since + dt.timedelta(seconds=seconds)).astimezone(dt.UTC).isoformat(timespec="seconds")

    manifest = {"kind": "train", "status": "running", "overrides": list(OVERRIDES), "config": {}}
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "started": at(started_s)}))
    (tmp_path / REFUSAL).write_text(json.dumps({"status": "refused", "overrides": list(OVERRIDES), "refused": at(20)}))
    told = outcome(Launched(0, tmp_path, OVERRIDES), since, "val/domain/bpb", ["minimize"], new_launch())
    assert told is not None and told.running is not failed and told.values is None
    assert refused_since(tmp_path, OVERRIDES, since, new_launch()) is failed


def test_a_manifest_of_this_launch_written_by_a_node_minutes_behind_keeps_its_value(tmp_path, monkeypatch):
    """Its `started` is minutes before the launch by the search host's clock, beyond CLOCK_SKEW: by the clocks it
    was an earlier launch's, and its completed trial stayed RUNNING, to run again."""

    def jobs(overrides, initial_job_idx):  # job 0 completed on a node whose clock is 5 minutes behind; job 1 failed
        folder = tmp_path / "sweep" / "0"
        folder.mkdir(parents=True)
        as_job(monkeypatch, folder, overrides[0])
        on_a_clock(monkeypatch, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        run = RunManifest(folder, OmegaConf.create({}), "train")
        run.update("metrics", {"after": {"domain": {"bpb": 0.25}}})
        run.finish("completed")
        raise uncompleted(1)

    search, storage = search_of_two(tmp_path, jobs)
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"]  # before: ["RUNNING", "RUNNING"]
    assert trials[0].value == 0.25


def test_an_attempt_that_started_in_the_same_second_as_the_refused_records_is_not_taken_for_them(tmp_path, monkeypatch):
    """The first attempt is preempted; the second refuses beside its manifest; the third, requeued onto a node
    behind, records itself in the second the first did by their clocks, and is preempted and requeued in turn.
    By `started` alone the folder's manifest was the one the refusal named, and the trial failed."""
    since, launch, folder = launch_time(), new_launch(), tmp_path / "0"
    folder.mkdir()
    with launching(launch):
        as_job(monkeypatch, folder, OVERRIDES)
        on_a_clock(monkeypatch, since + dt.timedelta(seconds=10))
        preempted(folder)
        on_a_clock(monkeypatch, since + dt.timedelta(seconds=100))
        record_refusal()
        on_a_clock(monkeypatch, since + dt.timedelta(seconds=10))
        preempted(folder)
    told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"], launch)
    assert told is not None and told.running  # before: failed, "its job refused its input"
    assert not refused_since(folder, OVERRIDES, since - dt.timedelta(minutes=1), launch)
    manifest, refusal = (json.loads((folder / name).read_text()) for name in ("manifest.json", REFUSAL))
    assert refusal["manifest_started"] == manifest["started"] and refusal["manifest_attempt"] != manifest["attempt"]


@pytest.mark.parametrize(
    "named, manifest, refused",
    [
        ({"manifest_attempt": None, "manifest_started": "T1"}, {"started": "T1"}, True),
        ({"manifest_attempt": None, "manifest_started": "T1"}, {"started": "T1", "attempt": "b"}, False),
        ({"manifest_attempt": None, "manifest_started": None}, None, True),
        ({"manifest_attempt": None, "manifest_started": None}, {"started": "T1", "attempt": "b"}, False),
        ({"manifest_started": "T1"}, {"started": "T1", "attempt": "b"}, True),
        ({"manifest_started": "T1"}, {"started": "T2", "attempt": "b"}, False),
    ],
    ids=[
        "beside a manifest without an id, still there",
        "beside a manifest without an id, replaced in the same second",
        "beside none, none since",
        "beside none, one recorded since",
        "a refusal without attempt ids, by started: the same",
        "a refusal without attempt ids, by started: another",
    ],
)
def test_a_record_without_an_attempt_id_is_told_by_started(named, manifest, refused):
    """A manifest or a refusal written before attempt ids (`attempt`, `manifest_attempt`): by the manifest's
    `started` alone where the refusal names no id, by both where it names none (None) beside a manifest with one."""
    since, launch = launch_time(), new_launch()
    refusal = {"status": "refused", "overrides": list(OVERRIDES), "launch": launch, **named}
    refusal["refused"] = since.astimezone(dt.UTC).isoformat(timespec="seconds")
    folder_manifest = None if manifest is None else {**manifest, "overrides": list(OVERRIDES), "launch": launch}
    assert refused_after(refusal, OVERRIDES, since, folder_manifest, launch) is refused
