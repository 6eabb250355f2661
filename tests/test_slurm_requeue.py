"""SLURM requeue and interruption as a cluster user meets them: `sbatch --requeue` reruns the same
command, which must find its own folder again (named by the job id) and resume there; SLURM's warning
signal (USR1/USR2) at any moment of the job ends it cleanly (before training: requeued without
training; after training: the run completes); Ctrl-C is acknowledged and a second one stops at once.
Every job runs train.py in a subprocess, with fake SLURM variables and a fake `scontrol` on PATH."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, ROOT, TINY_FAST, read_manifest

TESTS = Path(__file__).resolve().parent
COMMON = [
    *TINY_FAST,
    "trainer.max_steps=4",
    "stage.validate_before=false",
    "callbacks.checkpoint.every_n_train_steps=100",
]


def fake_slurm(tmp_path: Path, **variables: str) -> dict:
    """The environment of a SLURM job whose `scontrol` only records what it was asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "scontrol.log"}"\n')
    scontrol.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **variables}


def scontrol_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "scontrol.log"
    return log.read_text().splitlines() if log.exists() else []


def train(cwd: Path, args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """train.py run from `cwd` (so its default outputs/ folder lands there), test helpers importable."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(TESTS)}
    for variable in ("HYDRA_FULL_ERROR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        full_env.pop(variable, None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def callback(name: str, target: str, **params) -> list[str]:
    return [f"+callbacks.{name}._target_={target}", *(f"+callbacks.{name}.{k}={v}" for k, v in params.items())]


def test_a_requeued_sbatch_job_resumes_in_the_folder_its_job_id_names(tmp_path):
    env = fake_slurm(tmp_path, SLURM_JOB_ID="4243")
    usr1 = callback("signal", "helpers.kill.KillAtStep", step=2, sig="SIGUSR1")
    first = train(tmp_path, [*COMMON, *usr1], env)
    assert first.returncode == 128 + signal.SIGUSR1, first.stderr[-3000:]
    assert "Traceback" not in first.stderr and "requeued" in first.stderr, first.stderr[-3000:]
    assert scontrol_calls(tmp_path) == ["requeue 4243"]
    run = tmp_path / "outputs" / "slurm-4243" / "train"
    assert read_manifest(run)["status"] == "interrupted"
    assert (run / "checkpoints" / "last.ckpt").is_file()

    # SLURM reruns the same batch script: same job id, same command (here without the test's signal).
    again = train(tmp_path, COMMON, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and manifest["metrics"]["global_step"] == 4
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["slurm-4243"]


def resolved_run_dir(tmp_path: Path, env: dict, *overrides: str) -> str:
    shown = train(tmp_path, ["model=tiny", *overrides, "--cfg", "hydra", "--resolve", "-p", "hydra.run.dir"], env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout.strip().splitlines()[-1]


def test_the_default_run_folder_follows_the_slurm_job_array_task_and_a_given_one_is_kept(tmp_path):
    # An array task has a SLURM_JOB_ID of its own, kept across its requeues; its folder reads like
    # SLURM's own %A_%a log names.
    array = {"SLURM_JOB_ID": "5003", "SLURM_ARRAY_JOB_ID": "5000", "SLURM_ARRAY_TASK_ID": "3"}
    assert resolved_run_dir(tmp_path, array) == "outputs/slurm-5000_3/train"
    assert resolved_run_dir(tmp_path, {"SLURM_JOB_ID": "77"}) == "outputs/slurm-77/train"
    assert resolved_run_dir(tmp_path, {"SLURM_JOB_ID": "77"}, "hydra.run.dir=mine") == "mine"
    outside = resolved_run_dir(tmp_path, {})
    assert outside.startswith("outputs/20") and "slurm" not in outside  # outputs/<date>/<time>


def test_slurm_warning_before_training_requeues_the_job_without_training(tmp_path):
    env = fake_slurm(tmp_path, SLURM_JOB_ID="4244")
    run = tmp_path / "run"
    early = callback("signal", "helpers.signals.SignalWhenBuilt", sig="SIGUSR1")
    stopped = train(tmp_path, [*COMMON, *early, f"hydra.run.dir={run}"], env)
    assert stopped.returncode == 128 + signal.SIGUSR1, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "chipadapt: interrupted (SIGUSR1" in stopped.stderr
    assert scontrol_calls(tmp_path) == ["requeue 4244"]
    assert read_manifest(run)["status"] == "interrupted"
    assert not (run / "checkpoints" / "last.ckpt").exists() and not (run / "model").exists()  # nothing trained


def test_slurm_warning_after_training_completes_the_run_and_does_not_requeue(tmp_path):
    env = fake_slurm(tmp_path, SLURM_JOB_ID="4245")
    run = tmp_path / "run"
    late = callback("signal", "helpers.signals.SignalAtFinalValidation", sig="SIGUSR2")
    done = train(tmp_path, [*COMMON, *late, f"hydra.run.dir={run}"], env)
    assert "test: sending SIGUSR2" in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after training" in done.stderr
    assert scontrol_calls(tmp_path) == []
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and manifest["metrics"]["after"]["domain"]["loss"] > 0
    assert (run / "model" / "model.safetensors").is_file()


def test_ctrl_c_is_acknowledged_and_a_second_one_stops_at_once_without_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    twice = callback("signal", "helpers.signals.SignalTwiceAtStep", step=2, sig="SIGINT")
    stopped = train(tmp_path, [*COMMON, *twice, f"hydra.run.dir={run}"])
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr[-3000:]
    assert "press Ctrl-C again to stop now without saving" in stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert read_manifest(run)["status"] == "interrupted"
    assert not (run / "checkpoints" / "last.ckpt").exists()  # the second Ctrl-C did not wait for the save


def test_a_launchers_requeue_exit_status_is_kept(monkeypatch):
    """submitit's handler requeues and exits with the status its controller reads (the local
    executor reruns a task that exits with LOCAL_REQUEUE_RETURN_CODE): the job's exit keeps it."""
    from chipadapt import interrupts

    def launcher_handler(signum, frame):
        raise SystemExit(144)

    monkeypatch.setattr(signal, "getsignal", lambda sig: launcher_handler if sig == signal.SIGUSR2 else signal.SIG_DFL)
    monkeypatch.setattr(signal, "signal", lambda sig, handler: None)
    interrupts.install()
    try:
        with pytest.raises(interrupts.Interrupted) as stop:
            interrupts.handle_signal(signal.SIGUSR2, None)
    finally:
        interrupts.reset()  # in-process: later tests must not see this signal as received
    assert stop.value.exit_status == 144 and "requeued by the launcher" in str(stop.value)


def launcher_settings(*overrides: str):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (the launcher's resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(
            "train", overrides=["model=tiny", "hydra/launcher=slurm", *overrides], return_hydra_config=True
        )
    return cfg.hydra.launcher


def test_the_slurm_launcher_asks_for_gpus_only_for_a_gpu_trainer(tmp_path):
    cpu = launcher_settings()  # trainer=cpu: one task, no GPU
    assert (cpu.gpus_per_node, cpu.tasks_per_node, cpu.nodes) == (0, 1, 1)
    cpu_ddp = launcher_settings("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert (cpu_ddp.gpus_per_node, cpu_ddp.tasks_per_node) == (0, 2)
    gpus = launcher_settings("trainer=ddp", "trainer.num_nodes=2")  # devices=-1: every GPU of the node
    assert (gpus.gpus_per_node, gpus.tasks_per_node, gpus.nodes) == (8, 8, 2)
    four = launcher_settings("trainer=ddp", "hydra.launcher.gpus_per_node=4")
    assert (four.gpus_per_node, four.tasks_per_node) == (4, 4)


def test_previewing_the_slurm_launcher_with_cfg_hydra_names_the_way_that_works(tmp_path):
    shown = train(
        tmp_path, ["model=tiny", "hydra/launcher=slurm", "--cfg", "hydra", "--resolve", "-p", "hydra.launcher"]
    )
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert "--cfg all --resolve -p hydra.launcher" in shown.stderr, shown.stderr
