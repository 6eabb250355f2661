"""A trial's job requeued by hand (`scontrol requeue`) as the search reads its folder. The search probed the
folder's lock, then read manifest.json, then .refused.json: a requeued attempt that took the lock and wrote its
manifest between the probe and the reads left the search reading the manifest of the attempt before it beside the
refusal record of that attempt, and it failed the trial the new attempt runs."""

import datetime as dt
import json
from contextlib import ExitStack
from pathlib import Path

import pytest

from chipadapt import optuna_trial_outcome
from chipadapt.io.lock import run_folder_lock
from chipadapt.manifest import REFUSAL
from chipadapt.optuna_trial_outcome import Launched, launch_time, outcome, refused_since, this_launch

OVERRIDES = ("optim.lr=0.1",)


def at(since: dt.datetime, seconds: float) -> str:
    return (since + dt.timedelta(seconds=seconds)).astimezone(dt.UTC).isoformat(timespec="seconds")


def write(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record))


def manifest(status: str, started: str, **more) -> dict:
    return {"kind": "train", "status": status, "overrides": list(OVERRIDES), "started": started, "config": {}} | more


def refused_then_requeued(folder: Path, since: dt.datetime) -> None:
    """The folder as a refused attempt left it: its first attempt's manifest (running: preempted and requeued by
    SLURM) and the refusal record of the attempt after it. The trial failed, until the user fixed the input and
    requeued the job by hand."""
    folder.mkdir()
    write(folder / "manifest.json", manifest("running", at(since, 10)))
    write(folder / REFUSAL, {"status": "refused", "overrides": list(OVERRIDES), "refused": at(since, 20)})


@pytest.fixture
def requeued_attempt(tmp_path):
    """The attempt `scontrol requeue` started: it takes the folder's lock, then writes its manifest."""
    with ExitStack() as held:

        def start(folder: Path, since: dt.datetime, status: str = "running", **more) -> None:
            if status == "running":
                held.enter_context(run_folder_lock(folder))
            write(folder / "manifest.json", manifest(status, at(since, 40), **more))

        yield start


def starts_after(monkeypatch, where: str, start) -> None:
    """Run `start` once, right after the search's first read of manifest.json or its first lock probe."""
    original = getattr(optuna_trial_outcome, where)
    started = []

    def racing(folder, *args):
        seen = original(folder, *args)
        if not started and (where != "read_manifest" or not args):
            started.append(True)
            start()
        return seen

    monkeypatch.setattr(optuna_trial_outcome, where, racing)


@pytest.mark.parametrize("where", ["read_manifest", "folder_lock_held"])
def test_a_requeued_attempt_that_takes_the_folder_as_the_search_reads_it_keeps_its_trial_running(
    tmp_path, monkeypatch, requeued_attempt, where
):
    since, folder = launch_time() - dt.timedelta(minutes=5), tmp_path / "0"
    refused_then_requeued(folder, since)
    starts_after(monkeypatch, where, lambda: requeued_attempt(folder, since))
    told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"])
    assert told is not None and told.running, told.why


def test_an_attempt_that_takes_the_lock_after_the_probe_and_writes_after_the_second_read_keeps_its_trial_running(
    tmp_path, monkeypatch
):
    """The lock is probed again after the second read: the attempt holds the folder but its manifest (written after
    RunManifest's git subprocesses) is not there yet, so both reads agreed on the refused attempt's records."""
    since, folder = launch_time() - dt.timedelta(minutes=5), tmp_path / "0"
    refused_then_requeued(folder, since)
    with ExitStack() as attempt:
        starts_after(monkeypatch, "folder_lock_held", lambda: attempt.enter_context(run_folder_lock(folder)))
        told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"])
        assert told is not None and told.running, told.why
        assert not refused_since(folder, OVERRIDES, since)


def test_the_next_search_does_not_fail_a_trial_whose_requeued_attempt_takes_the_folder_as_it_reads(
    tmp_path, monkeypatch, requeued_attempt
):
    """optuna_search.fail_if_refused reads the folder as the search's outcome does."""
    since, folder = launch_time() - dt.timedelta(minutes=5), tmp_path / "0"
    refused_then_requeued(folder, since)
    assert refused_since(folder, OVERRIDES, since)  # as the refused attempt left it
    starts_after(monkeypatch, "read_manifest", lambda: requeued_attempt(folder, since))
    assert not refused_since(folder, OVERRIDES, since)


def test_an_attempt_that_ran_to_its_end_between_the_reads_is_told_by_its_own_record(
    tmp_path, monkeypatch, requeued_attempt
):
    """Not the refusal of the attempt before it: the folder is read again until two reads agree."""
    since, folder = launch_time() - dt.timedelta(minutes=5), tmp_path / "0"
    refused_then_requeued(folder, since)
    failed = {"error": "OutOfMemoryError: CUDA out of memory", "finished": at(since, 90)}
    starts_after(monkeypatch, "read_manifest", lambda: requeued_attempt(folder, since, "failed", **failed))
    told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"])
    assert told is not None and not told.running and "OutOfMemoryError" in told.why


def test_a_folder_whose_records_keep_changing_is_left_to_the_process_writing_them(tmp_path, monkeypatch):
    since, folder = launch_time() - dt.timedelta(minutes=5), tmp_path / "0"
    refused_then_requeued(folder, since)
    original, reads = optuna_trial_outcome.read_manifest, iter(range(10**6))

    def changing(where, name="manifest.json"):
        seen = original(where, name)
        return seen if name != "manifest.json" else {**seen, "step": next(reads)}

    monkeypatch.setattr(optuna_trial_outcome, "read_manifest", changing)
    told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"])
    assert told is not None and told.running


def test_a_refusal_nobody_races_still_fails_its_trial(tmp_path):
    since, folder = launch_time() - dt.timedelta(minutes=5), tmp_path / "0"
    refused_then_requeued(folder, since)
    told = outcome(Launched(0, folder, OVERRIDES), since, "val/domain/bpb", ["minimize"])
    assert told is not None and not told.running and "refused" in told.why


def test_a_naive_time_hours_behind_the_search_host_is_not_this_launchs():
    """Kept as it is: naive times are written only by a chipadapt from before records were in UTC, so never by
    a job of a launch this code made, and an hours-wide window would take an earlier attempt's record in the
    same folder, with the same overrides, for this launch's (failing a trial whose job may be queued still)."""
    since = launch_time()
    behind = (since.replace(tzinfo=None) - dt.timedelta(hours=5)).isoformat()
    assert not this_launch({"overrides": list(OVERRIDES), "started": behind}, OVERRIDES, since)
