"""A run started over (`resume=false`) in a folder holding a checkpoint, then killed, leaves a folder
whose checkpoint and curves belong to one run: the rerun never resumes the old checkpoint under the
new run's first rows (the trial: metrics.csv with lr=1e-3 rows for steps 0-6, then the old run's
lr=5e-6 rows from step 43, its steps 0-42 gone)."""

import csv
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_FAST
from helpers.fault_jobs import run_here

BASE = [*TINY_FAST, "trainer.max_steps=6", "stage.validate_before=false", "loss_guard.enabled=false"]
BASE += ["logger=tensorboard"]  # metrics.csv and TensorBoard events


def train(run_dir, *args, every_n=1, kill_at=None):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    kill = ["+callbacks.killer._target_=helpers.kill.KillAtStep", f"+callbacks.killer.step={kill_at}"]
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *BASE,
            *args,
            *(kill if kill_at else []),
            f"callbacks.checkpoint.every_n_train_steps={every_n}",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=env,
    )


def rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.integration
def test_a_killed_start_over_leaves_no_old_checkpoint_under_its_curves(tmp_path):
    run = tmp_path / "run"
    first = train(run, kill_at=4)  # the original run: checkpoint at step 3, rows 0-3 at lr 5e-6
    assert first.returncode == -9, first.stderr[-2000:]
    assert {row["step"] for row in rows(run) if row.get("train/loss")} >= {"0", "1", "2"}
    # Started over with another lr, killed before its first checkpoint.
    second = train(run, "resume=false", "overwrite=true", "optim.lr=1e-3", every_n=100, kill_at=2)
    assert second.returncode == -9, second.stderr[-2000:]
    # The original command again, run in this process (the kills are the processes this needs): whatever
    # it continues, its curve is one run's.
    run_here("train", [*BASE, "callbacks.checkpoint.every_n_train_steps=1"], run)
    logged = rows(run)
    rates = {float(value) for row in logged for key, value in row.items() if key.startswith("lr-") and value}
    assert rates == {5e-6}, rates
    steps = [int(row["step"]) for row in logged if row.get("train/loss")]
    assert steps == list(range(6))
    # TensorBoard, as it reads the folder (purge markers applied): the same one run.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/loss")] == list(range(6))
    tags = [tag for tag in events.Tags()["scalars"] if tag.startswith("lr-")]
    shown = [event.value for tag in tags for event in events.Scalars(tag)]
    assert tags and shown == pytest.approx([5e-6] * len(shown))
