"""A second command started in a run folder a live job holds is refused before the resume check says
anything: what it logged went to the log file Hydra opened in that folder, the running job's train.log,
where "no checkpoint ...: training starts from step 0" read as the running job's own line."""

import fcntl
import json
import logging
import os

import pytest
from conftest import TINY_FAST, compose

from chipadapt.errors import ChipadaptError
from chipadapt.io.lock import LOCK_NAME
from chipadapt.stages.resume_decision import resume_checkpoint


@pytest.fixture
def earlier_attempt(tmp_path):
    """A run folder whose attempt recorded its manifest and was stopped before its first checkpoint."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"kind": "train", "status": "running"}))
    return out


def test_a_folder_held_by_a_live_job_is_refused_before_anything_is_logged(earlier_attempt, caplog):
    cfg = compose(TINY_FAST, earlier_attempt)
    # Another open file holds the lock: flock conflicts between open files, also within one process.
    held = os.open(earlier_attempt / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    os.write(held, json.dumps({"pid": 660, "command": "train.py first"}).encode())
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(ChipadaptError, match="run folder in use by pid 660"):
            resume_checkpoint(cfg, earlier_attempt)
    finally:
        os.close(held)
    assert caplog.records == []


def test_a_folder_no_live_job_holds_is_told_it_starts_from_step_0(earlier_attempt, caplog):
    (earlier_attempt / LOCK_NAME).write_text("")  # the lock file of the stopped attempt, held by nobody
    with caplog.at_level(logging.INFO):
        assert resume_checkpoint(compose(TINY_FAST, earlier_attempt), earlier_attempt) is None
    assert "training starts from step 0" in caplog.text
