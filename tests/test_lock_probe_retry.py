"""A reader's lock probe (io/lock_probe.folder_lock_held takes a shared lock for a moment; an Optuna search probes
its trials' folders) made the run that took its folder at that moment fail: "run folder in use by pid ?". A
holder that is not a live process of this host is waited for a moment (io/lock.UNKNOWN_HOLDER_PATIENCE_S); a run
in use by a live process is still refused at once."""

import fcntl
import json
import os
import threading
import time

import pytest

from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import LOCK_NAME, UNKNOWN_HOLDER_PATIENCE_S, run_folder_lock


def probe_holding(lock_file, seconds: float, taken: threading.Event) -> None:
    """What folder_lock_held does, its shared lock held for `seconds`: a read-only open, LOCK_SH."""
    fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        taken.set()
        time.sleep(seconds)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def probed(lock_file, seconds: float) -> threading.Thread:
    taken = threading.Event()
    thread = threading.Thread(target=probe_holding, args=(lock_file, seconds, taken))
    thread.start()
    assert taken.wait(5)
    return thread


@pytest.mark.parametrize("left_by", ["nobody", "a killed run"])
def test_a_run_that_takes_its_folder_while_a_reader_probes_it_waits_for_the_probe(tmp_path, left_by):
    folder = tmp_path / "run"
    folder.mkdir()
    # a run that ended leaves the file empty; one killed with SIGKILL leaves its pid (no longer a process)
    dead = json.dumps({"pid": 2**22 + 7, "command": "train.py"}) if left_by == "a killed run" else ""
    (folder / LOCK_NAME).write_text(dead)
    thread = probed(folder / LOCK_NAME, 0.1)
    try:
        with run_folder_lock(folder):
            assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        thread.join()


def test_a_folder_in_use_by_a_live_process_is_refused_at_once(tmp_path):
    folder = tmp_path / "run"
    with run_folder_lock(folder):  # flock conflicts between two open files, even in one process
        started = time.monotonic()
        with pytest.raises(ChipadaptError, match=f"run folder in use by pid {os.getpid()} "):
            with run_folder_lock(folder):
                pass
        assert time.monotonic() - started < UNKNOWN_HOLDER_PATIENCE_S / 2


def test_a_holder_that_stays_unknown_is_refused_after_the_wait(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("")
    thread = probed(folder / LOCK_NAME, UNKNOWN_HOLDER_PATIENCE_S + 1.5)
    try:
        started = time.monotonic()
        with pytest.raises(ChipadaptError, match=r"run folder in use by pid \?"):
            with run_folder_lock(folder):
                pass
        assert UNKNOWN_HOLDER_PATIENCE_S <= time.monotonic() - started < UNKNOWN_HOLDER_PATIENCE_S + 1
    finally:
        thread.join()
