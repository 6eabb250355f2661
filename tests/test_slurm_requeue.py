"""SLURM requeue and interruption as a cluster user meets them: `sbatch --requeue` reruns the same
command lines, each of which must find its own folder again (named by the job id and the command line)
and resume there, while different command lines of one job keep apart; SLURM's warning
signal (USR1/USR2) at any moment of the job ends it cleanly (before training: requeued without
training; after training: the run completes); Ctrl-C is acknowledged and a second one stops at once.
Every job runs train.py in a subprocess, with fake SLURM variables and a fake `scontrol` on PATH."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


def train(cwd: Path, args: list[str], env: dict | None = None, script: str = "train.py") -> subprocess.CompletedProcess:
    """train.py (or another entry point) run from `cwd` (so its default outputs/ folder lands there),
    test helpers importable."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(TESTS)}
    for variable in ("HYDRA_FULL_ERROR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        full_env.pop(variable, None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def callback(name: str, target: str, **params) -> list[str]:
    return [f"+callbacks.{name}._target_={target}", *(f"+callbacks.{name}.{k}={v}" for k, v in params.items())]


def only_folder(parent: Path) -> Path:
    (folder,) = parent.iterdir()
    return folder


@pytest.fixture(scope="module")
def requeued_job(tmp_path_factory) -> SimpleNamespace:
    """An sbatch job warned by SLURM at step 2, requeued, and its rerun, warned again during its validation
    after training: the same command line twice, with what each left behind."""
    tmp_path = tmp_path_factory.mktemp("requeued")
    env = fake_slurm(tmp_path, SLURM_JOB_ID="4243")
    # SLURM warns the job once; the requeued job reruns the exact same command line, these callbacks included.
    warning = callback(
        "signal", "helpers.slurm_warning.WarnOnceAtStep", step=2, sig="SIGUSR1", sent_file=tmp_path / "warned"
    )
    late = callback("late", "helpers.signals.SignalAtFinalValidation", sig="SIGUSR2")
    command = [*COMMON, *warning, *late]
    job = SimpleNamespace(tmp_path=tmp_path)
    job.first = train(tmp_path, command, env)
    job.calls_after_first = scontrol_calls(tmp_path)
    job.folders_after_first = list((tmp_path / "outputs" / "slurm-4243").iterdir())
    job.run = job.folders_after_first[0]
    job.manifest_after_first = read_manifest(job.run)
    job.checkpoint_after_first = (job.run / "checkpoints" / "last.ckpt").is_file()
    job.again = train(tmp_path, command, env)
    job.calls_after_again = scontrol_calls(tmp_path)
    return job


def test_a_requeued_sbatch_job_resumes_in_the_folder_its_job_id_and_command_line_name(requeued_job):
    job = requeued_job
    first = job.first
    assert first.returncode == 128 + signal.SIGUSR1, first.stderr[-3000:]
    assert "Traceback" not in first.stderr and "requeued" in first.stderr, first.stderr[-3000:]
    assert "test: sending SIGUSR2" not in first.stderr  # interrupted before the validation after training
    assert job.calls_after_first == ["requeue 4243"]
    assert len(job.folders_after_first) == 1 and job.run.name.startswith("train-"), job.folders_after_first
    assert job.manifest_after_first["status"] == "interrupted"
    assert job.checkpoint_after_first

    again = job.again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr
    manifest = read_manifest(job.run)
    assert manifest["status"] == "completed" and manifest["metrics"]["global_step"] == 4
    assert [p.name for p in (job.tmp_path / "outputs").iterdir()] == ["slurm-4243"]
    assert only_folder(job.tmp_path / "outputs" / "slurm-4243") == job.run


def test_two_command_lines_of_one_job_keep_their_results_apart_and_a_rerun_finds_its_own(tmp_path):
    """An sbatch script (or an salloc session) that evaluates twice with other settings: each run keeps
    its own results; the requeued job's rerun of the first command line goes back to its folder."""
    env = {"SLURM_JOB_ID": "4242"}
    one_document, three_documents = (
        ["model=tiny", "eval=[perplexity]", f"eval.perplexity.max_documents={n}"] for n in (1, 3)
    )
    # The job's two lines, then the requeued job's rerun of the first, one after the other in one process (where
    # a run goes depends on its line alone; the fresh process of `--cfg hydra` below names the same folder).
    lines = [*one_document, "---", *three_documents, "---", *one_document]
    ran = train(tmp_path, ["evaluate.py", *lines], env, script="tests/helpers/command_lines.py")
    assert ran.returncode == 0, ran.stderr[-3000:]
    statuses = [line for line in ran.stdout.splitlines() if line.startswith("command line ")]
    assert statuses == [f"command line {n}: exit 0" for n in (1, 2, 3)], ran.stderr[-3000:]
    folders = sorted((tmp_path / "outputs" / "slurm-4242").iterdir())  # the rerun found its own: no third
    assert len(folders) == 2 and all(f.name.startswith("evaluate-") for f in folders), folders
    documents = {f: json.loads((f / "results.json").read_text())["perplexity"]["domain.documents"] for f in folders}
    assert sorted(documents.values()) == [1, 3]  # neither line's results replaced by the other's
    (first,) = [f for f, n in documents.items() if n == 1]
    # What `--cfg hydra` shows is the folder the run really used (Hydra adds hydra.mode=RUN to a run only).
    assert (
        resolved_run_dir(tmp_path, env, *one_document[1:], script="evaluate.py") == f"outputs/slurm-4242/{first.name}"
    )


ENTRY_POINTS = {  # two command lines a job could run one after the other
    "train": (["experiment=quickstart"], ["experiment=quickstart", "stage=sft"]),
    "evaluate": (["model.path=runs/dapt/model"], ["model.path=runs/sft/model"]),
    "compare": (["runs=[runs/a,runs/b]"], ["runs=[runs/a,runs/c]"]),
    "chat": (["model.path=runs/dapt/model"], ["model.path=runs/dapt/model", "generate.temperature=0.7"]),
    "merge": (["models.chip=a", "models.instruct=b"], ["models.chip=a", "models.instruct=b", "merge.lam=0.3"]),
    "export": (["run=runs/dapt", "step=100"], ["run=runs/dapt", "step=200"]),
}


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_every_entry_point_gets_a_folder_per_command_line_within_one_job(command, monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import chipadapt  # noqa: F401  (the resolvers)

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for variable in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(variable, raising=False)

    def run_dir(overrides: list[str]) -> str:
        # The job is named after its script, as the entry points' Hydra names it.
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name=command):
            return hydra_compose(command, overrides=overrides, return_hydra_config=True).hydra.run.dir

    one, other = ENTRY_POINTS[command]
    assert run_dir(one).startswith(f"outputs/slurm-4242/{command}-")
    assert run_dir(one) != run_dir(other)
    assert run_dir(one) == run_dir(list(one))  # a requeue: the same line, the same folder
    # An override's text names the line, not its value: the requeue's `now` is another time.
    timed = [*one, "+tag=${now:%H-%M-%S-%f}"]
    assert run_dir(timed) == run_dir(timed)


def resolved_run_dir(tmp_path: Path, env: dict, *overrides: str, script: str = "train.py") -> str:
    shown = train(
        tmp_path, ["model=tiny", *overrides, "--cfg", "hydra", "--resolve", "-p", "hydra.run.dir"], env, script=script
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout.strip().splitlines()[-1]


def test_the_default_run_folder_follows_the_slurm_job_array_task_and_a_given_one_is_kept(tmp_path):
    # An array task has a SLURM_JOB_ID of its own, kept across its requeues; its folder reads like
    # SLURM's own %A_%a log names.
    array = {"SLURM_JOB_ID": "5003", "SLURM_ARRAY_JOB_ID": "5000", "SLURM_ARRAY_TASK_ID": "3"}
    in_array = resolved_run_dir(tmp_path, array)
    assert re.fullmatch(r"outputs/slurm-5000_3/train-[0-9a-f]{8}", in_array), in_array
    in_job = resolved_run_dir(tmp_path, {"SLURM_JOB_ID": "77"})
    assert in_job == in_array.replace("slurm-5000_3", "slurm-77")  # the same command line
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


def test_slurm_warning_after_training_completes_the_run_and_does_not_requeue(requeued_job):
    """The requeued job's rerun (requeued_job) is warned during its validation after training."""
    done = requeued_job.again
    assert "test: sending SIGUSR2" in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after training" in done.stderr
    assert requeued_job.calls_after_again == requeued_job.calls_after_first  # no second requeue
    manifest = read_manifest(requeued_job.run)
    assert manifest["status"] == "completed" and manifest["metrics"]["after"]["domain"]["loss"] > 0
    assert (requeued_job.run / "model" / "model.safetensors").is_file()


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
