"""A manifest's `started` and `finished` are aware UTC times (2026-12-07T10:00:00+00:00), and a naive one of
an earlier manifest is still read, as the local time it was written in. Before: naive local times, which a
search host in another zone (or after a DST change) read hours off, and a reader comparing one with an aware
time (the stopped-attempt check against its model's marker) would raise."""

import datetime as dt
import json
import time

import pytest
from omegaconf import OmegaConf

from chipadapt.finished_run import stopped_after_publishing
from chipadapt.io.lock import LOCK_NAME
from chipadapt.io.outputs import write_marker
from chipadapt.manifest import RunManifest, recorded_time

CONFIG = {"overwrite": False, "optim": {"lr": 5e-05}}


@pytest.fixture
def new_york():
    """A local zone other than UTC, so that reading a naive time as UTC would show (CI machines run in UTC)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TZ", "America/New_York")
        time.tzset()
        yield
    time.tzset()  # the zone the process had


def test_a_new_manifest_records_its_times_in_utc(tmp_path):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    manifest = RunManifest(tmp_path, OmegaConf.create({}), "train")
    manifest.finish("completed")
    written = json.loads((tmp_path / "manifest.json").read_text())
    for key in ("started", "finished"):
        when = dt.datetime.fromisoformat(written[key])
        assert when.utcoffset() == dt.timedelta(0) and written[key].endswith("+00:00")
        assert before <= when <= dt.datetime.now(dt.UTC)


def test_a_naive_time_is_read_as_local_time_and_an_aware_one_as_written(new_york):
    local = dt.datetime(2026, 7, 1, 12, 0, 0)  # noon in New York (EDT, UTC-4)
    assert recorded_time(local.isoformat()) == dt.datetime(2026, 7, 1, 16, tzinfo=dt.UTC)
    assert recorded_time("2026-12-07T10:00:00+00:00") == dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC)
    assert recorded_time("2026-12-07T11:00:00+01:00") == recorded_time("2026-12-07T10:00:00+00:00")
    assert recorded_time(None) is None and recorded_time("yesterday") is None


def _stopped_attempt(out, started: str) -> None:
    """model/ published by train.py (its marker's time: naive local) after an attempt recorded `started`,
    whose manifest still says running and whose lock no process holds (killed after publishing)."""
    (out / "model").mkdir(parents=True)
    write_marker(out / "model", "train")
    record = {"kind": "train", "status": "running", "started": started, "config": CONFIG}
    (out / "manifest.json").write_text(json.dumps(record))
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "command": "train.py"}))


def test_a_utc_start_is_compared_with_a_local_model_marker(tmp_path):
    started = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)).isoformat(timespec="seconds")
    _stopped_attempt(tmp_path / "new", started)
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path / "new")["status"] == "running"
    # a model published before the attempt started is an earlier run's, also where the start is in UTC
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(timespec="seconds")
    _stopped_attempt(tmp_path / "earlier", later)
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path / "earlier") is None


def test_an_old_manifests_naive_start_is_still_read(tmp_path, new_york):
    started = (dt.datetime.now() - dt.timedelta(seconds=60)).isoformat(timespec="seconds")
    _stopped_attempt(tmp_path, started)
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path)["status"] == "running"
