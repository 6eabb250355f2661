"""A run killed between publishing its model/ and recording itself completed (SIGKILL, a lost node)
is completed by the same command: the trial's requeue was refused ("holds a previous train output (its
run's status: running)"), and overwrite=true retrained it all from step 0. Another run's model/, one
published before the recorded attempt started, or a folder a live process holds are refused as before.
And a rerun after an attempt killed before its first checkpoint says that it starts from step 0."""

import datetime as dt
import fcntl
import hashlib
import json
import logging

import pytest
from conftest import TINY_FAST, compose, read_manifest
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.finished_run import stopped_after_publishing, what_changed
from chipadapt.io.lock import LOCK_NAME
from chipadapt.io.outputs import MARKER, write_marker

CONFIG = {"overwrite": False, "optim": {"lr": 5e-05}, "trainer": {"max_steps": 3}}


def _killed_after_publishing(out, config: dict, status: str = "running", started_ago_s: int = 60):
    """What the kill leaves: model/ published by train.py, the manifest of the attempt still "running",
    the lock file of the attempt, which no process holds any more."""
    (out / "model").mkdir(parents=True)
    write_marker(out / "model", "train")
    started = (dt.datetime.now() - dt.timedelta(seconds=started_ago_s)).isoformat(timespec="seconds")
    record = {"kind": "train", "status": status, "started": started, "config": config}
    (out / "manifest.json").write_text(json.dumps(record))
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "command": "train.py"}))


def test_the_runs_own_model_of_a_killed_attempt_is_recognised(tmp_path):
    _killed_after_publishing(tmp_path, CONFIG)
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path)["status"] == "running"
    # overwrite=true replaces any model/ anyway; it needs no adoption
    assert stopped_after_publishing(OmegaConf.create({**CONFIG, "overwrite": True}), tmp_path) is None


def test_other_settings_are_refused_and_named(tmp_path):
    _killed_after_publishing(tmp_path, CONFIG)
    cfg = OmegaConf.create({**CONFIG, "optim": {"lr": 1e-4}})
    assert stopped_after_publishing(cfg, tmp_path) is None
    assert what_changed(cfg, tmp_path) == " (its run's status: running), with other settings: optim.lr: 5e-05 -> 0.0001"


def test_a_folder_held_by_a_live_process_is_no_stopped_attempt(tmp_path):
    _killed_after_publishing(tmp_path, CONFIG)
    with open(tmp_path / LOCK_NAME) as held:  # another open file: flock conflicts within one process too
        fcntl.flock(held, fcntl.LOCK_EX)
        assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path) is None


def test_a_running_record_without_a_lock_to_probe_is_not_taken_for_stopped(tmp_path):
    _killed_after_publishing(tmp_path, CONFIG)
    (tmp_path / LOCK_NAME).unlink()  # a copied folder, or no flock: a live run cannot be ruled out
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path) is None
    # an attempt that recorded its own end (SIGTERM after the save) is known to be gone
    (tmp_path / "manifest.json").write_text(
        (tmp_path / "manifest.json").read_text().replace('"running"', '"interrupted"')
    )
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path)["status"] == "interrupted"


def test_a_model_published_before_the_attempt_started_is_an_earlier_runs(tmp_path):
    """A completed run, then overwrite=true with the same settings killed mid-training: its model/ is the
    completed run's, which only overwrite=true replaces (its rerun resumes the new attempt)."""
    _killed_after_publishing(tmp_path, CONFIG, started_ago_s=-3600)
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path) is None
    marker = json.loads((tmp_path / "model" / MARKER).read_text())
    (tmp_path / "model" / MARKER).write_text(json.dumps({**marker, "command": "merge"}))
    assert stopped_after_publishing(OmegaConf.create(CONFIG), tmp_path) is None


def _weights(run) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


def test_the_same_command_completes_a_run_killed_after_publishing(tmp_path, caplog):
    """In-process: a 2-step run, its manifest then put back as the kill left it ("running", no final
    metrics). The rerun resumes the finished checkpoint (no step trained), publishes model/ again with
    the same weights and records the run completed with its figures."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    overrides = [*TINY_FAST, "trainer.max_steps=2"]
    first = train(compose(overrides, run))
    weights, completed = _weights(run), read_manifest(run)
    killed = {**completed, "status": "running", "finished": None, "wall_s": None}
    killed["metrics"] = {"before": completed["metrics"]["before"]}
    (run / "manifest.json").write_text(json.dumps(killed))

    with pytest.raises(ChipadaptError, match=r"holds a previous train output \(its run's status: running\)"):
        train(compose([*overrides, "optim.lr=1e-3"], run))  # another run's command is still refused
    with caplog.at_level(logging.INFO):
        again = train(compose(overrides, run))
    said = [record.getMessage() for record in caplog.records]
    assert any("published by an earlier attempt of this run" in line for line in said)
    assert any(line.startswith("resuming from ") for line in said)
    manifest = read_manifest(run)
    assert manifest["status"] == "completed"
    assert manifest["metrics"]["after"] == completed["metrics"]["after"]
    assert manifest["metrics"]["before"] == completed["metrics"]["before"]
    assert again["train_loss"] == first["train_loss"]
    assert _weights(run) == weights


def test_a_rerun_with_no_checkpoint_to_resume_says_it_starts_from_step_0(tmp_path, caplog):
    from chipadapt.stages.resume_decision import resume_checkpoint

    cfg = compose(TINY_FAST, tmp_path)
    with caplog.at_level(logging.INFO, logger="chipadapt.stages.resume_decision"):
        assert resume_checkpoint(cfg, tmp_path) is None  # a new folder: nothing to say
        (tmp_path / "manifest.json").write_text(json.dumps({"kind": "train", "status": "running"}))
        assert resume_checkpoint(cfg, tmp_path, check=False) is None  # said once, by pipeline.train's check
        assert caplog.records == []
        assert resume_checkpoint(cfg, tmp_path) is None
    assert [record.getMessage() for record in caplog.records] == [
        f"no checkpoint in {tmp_path / 'checkpoints'}: training starts from step 0"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="chipadapt.stages.resume_decision"):
        resume_checkpoint(compose([*TINY_FAST, "stage=tokenizer"], tmp_path), tmp_path)
    assert caplog.records == []  # a stage that trains nothing has no step 0


class _Checked(Exception):
    pass


def test_a_secondary_process_follows_rank_0_once_it_holds_the_folder(tmp_path, monkeypatch):
    """Under DDP the other ranks run train.py too, after rank 0 took the folder and wrote its own manifest:
    they no longer saw a stopped attempt, refused the run's model/ with exit 2, and the requeue failed."""
    import chipadapt.pipeline as pipeline

    cfg = compose([*TINY_FAST, "trainer.max_steps=2"], tmp_path)
    config = OmegaConf.to_container(cfg, resolve=True)
    _killed_after_publishing(tmp_path, config, started_ago_s=-5)  # rank 0's attempt: started after model/
    asked = []

    def check_output_folder(folder, kind, key, may_replace, *args, **kwargs):
        asked.append(may_replace)
        raise _Checked

    from chipadapt.errors import ChipadaptError
    from chipadapt.stages import rank_0_decision

    monkeypatch.setattr(pipeline, "check_output_folder", check_output_folder)
    rank_0_decision.record_rank_0_decision(tmp_path, "last.ckpt")  # rank 0's answer, inherited
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as Lightning's launcher sets it for the processes it starts
    with open(tmp_path / LOCK_NAME) as held, pytest.raises(_Checked):  # rank 0 holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        pipeline.train(cfg)
    assert asked == [True]
    # Rank 0 stopped (refused) before it answered: the rank does not go on alone, whoever holds the folder.
    monkeypatch.delenv(rank_0_decision.DECISION_VARIABLE)
    monkeypatch.setattr(rank_0_decision, "WAIT_S", 0.0)
    with pytest.raises(ChipadaptError, match="rank 0 said within 0 s neither"):
        pipeline.train(cfg)
    assert asked == [True]


def test_a_running_record_without_a_lock_to_probe_is_refused_with_the_way_that_trains_nothing(tmp_path, monkeypatch):
    """The trial's refusal named only overwrite=true, which trains the finished run again from step 0."""
    import chipadapt.finished_run as finished_run

    _killed_after_publishing(tmp_path, CONFIG)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"finished")
    (tmp_path / LOCK_NAME).unlink()  # copied without it
    cfg = OmegaConf.create(CONFIG)
    said = what_changed(cfg, tmp_path)
    assert said == (
        f" (its run's status: running); whether its job still runs cannot be told: {tmp_path} has no {LOCK_NAME} "
        "(a folder copied without it, or written before run folders were locked). If no job uses the folder any "
        f"more, `touch {tmp_path / LOCK_NAME}` and run this command again: it completes the run from "
        "checkpoints/last.ckpt and publishes model/ again, instead of training it again"
    )
    (tmp_path / LOCK_NAME).touch()  # what the refusal says to do: then the probe tells, and the run is its own
    assert stopped_after_publishing(cfg, tmp_path)["status"] == "running"

    monkeypatch.setattr(finished_run, "folder_lock_held", lambda folder: None)  # a filesystem without flock
    assert stopped_after_publishing(cfg, tmp_path) is None
    assert "cannot be told: this filesystem has no flock. If no job uses the folder any more, copy" in what_changed(
        cfg, tmp_path
    )
    # no checkpoint to resume: the rerun would train again anyway, no way to name but overwrite=true
    (tmp_path / "checkpoints" / "last.ckpt").unlink()
    assert what_changed(cfg, tmp_path) == " (its run's status: running)"


def test_the_ways_the_refusal_names_complete_a_run_whose_lock_cannot_be_probed(tmp_path):
    """In-process, a 2-step run with its manifest put back as the kill left it and no lock file: refused,
    naming `touch`; after it, the same command completes the run without training (same weights). A copy
    of the folder (the way named where the filesystem has no flock) completes the same way."""
    import shutil

    from chipadapt.pipeline import train

    run = tmp_path / "run"
    overrides = [*TINY_FAST, "trainer.max_steps=2"]
    train(compose(overrides, run))
    weights, completed = _weights(run), read_manifest(run)
    killed = {**completed, "status": "running", "finished": None, "wall_s": None}
    killed["metrics"] = {"before": completed["metrics"]["before"]}
    (run / "manifest.json").write_text(json.dumps(killed))
    (run / LOCK_NAME).unlink()
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / LOCK_NAME).touch()  # as `cp -a` copies it from a filesystem without flock, where the job made it

    with pytest.raises(ChipadaptError, match=rf"If no job uses the folder any more, `touch {run / LOCK_NAME}`"):
        train(compose(overrides, run))
    (run / LOCK_NAME).touch()
    train(compose(overrides, run))
    assert read_manifest(run)["status"] == "completed" and _weights(run) == weights
    assert read_manifest(run)["metrics"]["after"] == completed["metrics"]["after"]

    train(compose(overrides, copy))
    assert read_manifest(copy)["status"] == "completed" and _weights(copy) == weights
