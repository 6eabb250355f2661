"""SIGTERM/SIGINT end a run cleanly: the manifest says `interrupted`, training writes last.ckpt at a
step boundary and a rerun in the same folder continues from it; temporary outputs are removed."""

import csv
import signal

import pytest
import torch
from conftest import TINY_FAST, read_manifest
from helpers.fault_jobs import run_here
from helpers.faults import run_entry

KILL = "+callbacks.kill._target_=helpers.kill.KillAtStep"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_during_training_checkpoints_and_the_rerun_resumes(tmp_path, sig):
    run = tmp_path / "run"
    common = [*TINY_FAST, "callbacks.checkpoint.every_n_train_steps=100", "trainer.max_steps=5"]
    stopped = run_entry(
        "train.py",
        [*common, f"hydra.run.dir={run}", KILL, "+callbacks.kill.step=2", f"+callbacks.kill.sig={sig}"],
        env={"PYTHONPATH": "tests"},
    )
    assert stopped.returncode == 128 + getattr(signal, sig), stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr and "chipadapt: interrupted" in stopped.stderr
    manifest = read_manifest(run)
    assert manifest["status"] == "interrupted"
    before = manifest["metrics"]["before"]
    assert before["domain"]["loss"] > 0
    assert (run / "checkpoints" / "last.ckpt").is_file()  # written on the signal, not by the every-100-steps rule
    assert not (run / "model").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    if sig == "SIGTERM":  # the command itself once: Hydra's guard takes the folder the signal left, exit 0
        resumed = run_entry("train.py", [*common, f"hydra.run.dir={run}"])
        assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    else:  # the job in this process, as train.py runs it (the signal is what needed a process of its own)
        run_here("train", common, run)
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and manifest["metrics"]["global_step"] == 5
    # The starting model's validation came back with the checkpoint: before/after survives the interruption.
    assert manifest["metrics"]["before"] == before and manifest["metrics"]["after"]["domain"]["loss"] > 0
    assert isinstance(manifest["metrics"]["train_loss"], float)
    with open(run / "metrics.csv") as handle:  # every step's loss is logged once, the interrupted run's last one too
        steps = sorted(int(r["step"]) for r in csv.DictReader(handle) if r.get("train/loss"))
    assert steps == list(range(5))
    with open(run / "metrics.csv") as handle:  # the learning rate once a step, not once per micro-batch
        lr_steps = [int(r["step"]) for r in csv.DictReader(handle) if r.get("lr-AdamW/pg1")]
    # (the step the signal stopped before is logged by both runs; accumulation 4 would log 4 rows a step)
    assert sorted(set(lr_steps)) == list(range(5)) and len(lr_steps) <= 6
    assert (run / "model" / "model.safetensors").is_file()
    # The resumed run's last step replaced the interrupt's checkpoint (not a last-v1.ckpt beside it).
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 5
