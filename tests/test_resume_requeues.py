"""A requeue (the same command line run again after a preemption or a lost node) continues its own run:
an overwrite=true continuation killed after it published, a resume=false job killed after its start-over."""

import json
import logging
import shutil

import pytest
import torch
from conftest import TINY_FAST, compose, read_manifest

from chipadapt.errors import ChipadaptError
from chipadapt.stages.checkpoint_records import FINISHED_KEY


def _as_killed(run) -> None:
    """The manifest put back as a SIGKILL after the publish leaves it: still "running", no final metrics."""
    completed = read_manifest(run)
    killed = {**completed, "status": "running", "finished": None, "wall_s": None}
    killed["metrics"] = {"before": completed["metrics"].get("before", {})}
    (run / "manifest.json").write_text(json.dumps(killed))


def test_an_overwrite_continuation_killed_after_publishing_is_completed_not_retrained(tmp_path, caplog):
    """A completed 2-step run, continued to 3 steps with overwrite=true and killed between the publish (and its
    record) and the manifest's last write: the requeue of that line started over and trained 3 fresh steps."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    train(compose([*TINY_FAST, "trainer.max_steps=2"], run))
    longer = [*TINY_FAST, "trainer.max_steps=3", "overwrite=true"]
    continued = train(compose(longer, run))
    assert read_manifest(run)["inputs"]["resumed"]["step"] == 2  # the continuation, as the README has it
    weights = (run / "model" / "model.safetensors").read_bytes()
    _as_killed(run)

    with caplog.at_level(logging.INFO):
        again = train(compose(longer, run))
    said = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("resuming from ") for line in said), said
    manifest = read_manifest(run)
    assert manifest["status"] == "completed"
    assert manifest["inputs"]["resumed"]["step"] == 3  # the finished checkpoint, no step trained again
    assert again["train_loss"] == continued["train_loss"]
    assert (run / "model" / "model.safetensors").read_bytes() == weights


def test_a_deliberate_overwrite_rerun_of_a_completed_run_still_trains_again(tmp_path):
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    train(compose([*TINY_FAST, "trainer.max_steps=2"], run))
    train(compose([*TINY_FAST, "trainer.max_steps=2", "overwrite=true"], run))
    assert "resumed" not in read_manifest(run)["inputs"]


def _in_slurm_job(monkeypatch, restarts: int | None, job: str = "4242") -> None:
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    if restarts is None:
        monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    else:
        monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))


def test_a_requeued_resume_false_job_continues_its_own_checkpoint(tmp_path, monkeypatch, caplog):
    """A resume=false SLURM job preempted between its last checkpoint and its publish (model/ not written yet),
    requeued by SLURM with the same command line: it discarded its own checkpoint and trained from step 0."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    line = [*TINY_FAST, "trainer.max_steps=2", "resume=false"]
    _in_slurm_job(monkeypatch, restarts=None)
    train(compose(line, run))
    started_by = read_manifest(run)["inputs"].get("started_over_by_slurm_job")
    shutil.rmtree(run / "model")  # what the preemption had not written yet
    _as_killed(run)

    _in_slurm_job(monkeypatch, restarts=1)
    with caplog.at_level(logging.INFO):
        train(compose(line, run))
    said = [record.getMessage() for record in caplog.records]
    assert any("was requeued (SLURM_RESTART_COUNT=1)" in line for line in said), said
    assert read_manifest(run)["inputs"]["resumed"]["step"] == 2
    assert not any("discarded" in line for line in said)
    assert started_by == {
        "SLURM_JOB_ID": "4242",
        "SLURM_ARRAY_JOB_ID": "4240",
        "SLURM_ARRAY_TASK_ID": "2",
        "restarts": 0,
    }


def test_a_requeue_after_the_settings_changed_starts_over_as_its_resume_false_asks(tmp_path, monkeypatch):
    """`scontrol requeue` after the user edited the job's settings: resumed, the settings check refused the
    checkpoint and said to start over with resume=false, which the job gives already, at every restart."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    _in_slurm_job(monkeypatch, restarts=None)
    train(compose([*TINY_FAST, "trainer.max_steps=2", "resume=false"], run))
    shutil.rmtree(run / "model")
    _as_killed(run)
    _in_slurm_job(monkeypatch, restarts=1)
    train(compose([*TINY_FAST, "trainer.max_steps=2", "optim.lr=0.001", "resume=false"], run))
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and "resumed" not in manifest["inputs"]


def test_a_start_over_outside_slurm_forgets_the_job_that_started_the_folder_over_before(tmp_path, monkeypatch):
    """A resume=false run by hand after a SLURM job's start-over: a later requeue of that job took the hand-run's
    checkpoint for its own and resumed it."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    line = [*TINY_FAST, "trainer.max_steps=2", "resume=false"]
    _in_slurm_job(monkeypatch, restarts=None)
    train(compose(line, run))
    monkeypatch.delenv("SLURM_JOB_ID")
    train(compose([*line, "overwrite=true"], run))  # by hand, killed before its publish
    shutil.rmtree(run / "model")
    _as_killed(run)
    _in_slurm_job(monkeypatch, restarts=1)  # the SLURM job requeued later
    train(compose(line, run))
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and "resumed" not in manifest["inputs"]


def test_only_the_same_job_requeued_continues_a_resume_false_start_over(tmp_path, monkeypatch):
    from functools import partial

    from chipadapt.stages.slurm_start_over import record_start_over_job
    from chipadapt.stages.slurm_start_over import requeued_start_over as requeued

    requeued_start_over = partial(requeued, cfg=compose(TINY_FAST, tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    record_start_over_job(tmp_path)  # outside SLURM: nothing recorded, today's start-over
    assert not (tmp_path / "checkpoints").exists() and requeued_start_over(tmp_path) is None
    _in_slurm_job(monkeypatch, restarts=None)
    record_start_over_job(tmp_path)
    assert requeued_start_over(tmp_path) is None  # a second command in the same job attempt starts over
    _in_slurm_job(monkeypatch, restarts=1)
    assert requeued_start_over(tmp_path) == {
        "SLURM_JOB_ID": "4242",
        "SLURM_ARRAY_JOB_ID": "4240",
        "SLURM_ARRAY_TASK_ID": "2",
    }
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")  # another task of the array
    assert requeued_start_over(tmp_path) is None
    _in_slurm_job(monkeypatch, restarts=1, job="5000")  # another job: a deliberate rerun
    assert requeued_start_over(tmp_path) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    assert requeued_start_over(tmp_path) is None


def test_a_resume_that_would_train_nothing_of_the_steps_asked_says_so(tmp_path):
    """An epoch-bounded run's checkpoint of an earlier release (no record of whether its training was done),
    rerun with overwrite=true and a trainer.max_steps beyond it: resumed, Lightning stopped at the epoch bound
    at once, and the run completed having trained nothing, publishing the old weights as the new length's."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    train(compose([*TINY_FAST, "stage.validate_before=false"], run))  # trainer.max_epochs=1, max_steps=-1
    step = read_manifest(run)["metrics"]["global_step"]
    ckpt = run / "checkpoints" / "last.ckpt"
    earlier = torch.load(ckpt, weights_only=False)
    del earlier[FINISHED_KEY]
    torch.save(earlier, ckpt)
    weights = (run / "model" / "model.safetensors").read_bytes()

    longer = [*TINY_FAST, "stage.validate_before=false", f"trainer.max_steps={step + 2}", "overwrite=true"]
    ckpt_bytes = ckpt.read_bytes()
    with pytest.raises(ChipadaptError, match=rf"trainer.max_steps={step + 2}: .* no step"):
        train(compose(longer, run))
    assert (run / "model" / "model.safetensors").read_bytes() == weights
    assert ckpt.read_bytes() == ckpt_bytes
    # Refused before the attempt's manifest: the run is still the completed one, which its own command passes.
    assert read_manifest(run)["status"] == "completed"
    assert train(compose([*TINY_FAST, "stage.validate_before=false"], run)) == read_manifest(run)["metrics"]


@pytest.mark.parametrize("changed", ["base model", "not overwrite"])
def test_a_stopped_publish_of_another_run_is_not_taken_for_this_continuations(tmp_path, changed):
    """The killed attempt that published model/ recorded another base model by content (one retrained at the same
    path), or was no overwrite=true run: the overwrite=true line trains again rather than republish its weights."""
    from chipadapt.pipeline import train

    run = tmp_path / "run"
    train(compose([*TINY_FAST, "trainer.max_steps=2"], run))
    longer = [*TINY_FAST, "trainer.max_steps=3", "overwrite=true"]
    train(compose(longer, run))
    _as_killed(run)
    killed = read_manifest(run)
    if changed == "base model":
        killed["inputs"]["model"]["fingerprint"] = "0" * 64
    else:
        killed["config"]["overwrite"] = False
    (run / "manifest.json").write_text(json.dumps(killed))

    train(compose(longer, run))
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and "resumed" not in manifest["inputs"]


def test_every_process_of_a_distributed_run_takes_rank_0s_answer(tmp_path, monkeypatch):
    """A process started after rank 0 took the folder (its lock, its attempt's manifest) read no stopped attempt
    and started over while rank 0 completed the stopped one from last.ckpt: the processes trained apart."""
    from chipadapt.io.lock import run_folder_lock
    from chipadapt.manifest import RunManifest
    from chipadapt.pipeline import train
    from chipadapt.stages import resume_decision
    from chipadapt.stages.rank_0_decision import record_rank_0_decision

    run = tmp_path / "run"
    train(compose([*TINY_FAST, "trainer.max_steps=2"], run))
    longer = [*TINY_FAST, "trainer.max_steps=3", "overwrite=true"]
    train(compose(longer, run))
    _as_killed(run)
    cfg = compose(longer, run)
    resume_decision._OWN_PUBLISH.clear()
    rank_0 = resume_decision.resume_checkpoint(cfg, run)
    assert rank_0 == str(run / "checkpoints" / "last.ckpt")
    with run_folder_lock(run):  # rank 0's recorded_job: the folder's lock, this attempt's manifest
        RunManifest(run, cfg)
        record_rank_0_decision(run, rank_0)  # pipeline.train's answer, holding the lock
        monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning starts at fit, rank 0's environment inherited
        monkeypatch.setenv("WORLD_SIZE", "2")
        resume_decision._OWN_PUBLISH.clear()
        assert resume_decision.resume_checkpoint(cfg, run) == rank_0
        assert resume_decision.resume_checkpoint(cfg, run, check=False) == rank_0
