"""A SLURM sweep whose job could not run is refused before submission, in one line naming the job and
the setting: the batch plan is checked with the processes the launcher gives the job (nodes x tasks per
node), not those of the login node that submits it, and the first job is checked too. Before, a global
batch of 100 on 3 nodes of 8 GPUs and `trainer.devices=0` were submitted, to fail once the nodes were
allocated."""

import os

import pytest
from conftest import CONF

SEVEN_B = ["experiment=chipnemo_7b", "model.path=/models/Llama-2-7b-hf", "hydra/launcher=slurm"]


@pytest.fixture
def sbatch_on_path(tmp_path, monkeypatch):
    """A login node's PATH: an sbatch that is never called (the preflight runs before any submission)."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")


def preflight(overrides: list[str], sweep_dir) -> None:
    """SweepPreflight.on_multirun_start on `train.py -m <overrides>`, composed as Hydra composes it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.sweep_preflight import SweepPreflight

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = (
            GlobalHydra.instance()
            .config_loader()
            .load_configuration("train", [*overrides, f"hydra.sweep.dir={sweep_dir}"], run_mode=RunMode.MULTIRUN)
        )
        SweepPreflight().on_multirun_start(config=config, config_name="train")


def refusal(capsys, overrides: list[str], sweep_dir) -> str:
    with pytest.raises(SystemExit) as stopped:
        preflight(overrides, sweep_dir)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chipadapt: error: ")
    return lines[0]


@pytest.mark.usefixtures("sbatch_on_path")
def test_a_global_batch_the_launched_processes_do_not_divide_is_refused_before_submission(tmp_path, capsys):
    line = refusal(capsys, [*SEVEN_B, "data.global_batch_size=100", "trainer.num_nodes=3", "optim.lr=5e-6"], tmp_path)
    assert "data.global_batch_size=100" in line and "x 24 processes" in line
    assert "3 nodes x 8 tasks per node" in line and "job #0" in line


@pytest.mark.usefixtures("sbatch_on_path")
def test_a_swept_global_batch_is_named_by_its_value(tmp_path, capsys):
    line = refusal(capsys, [*SEVEN_B, "data.global_batch_size=96,100", "trainer.num_nodes=3"], tmp_path)
    assert line.endswith("(sweep value data.global_batch_size=100)") and "x 24 processes" in line


@pytest.mark.usefixtures("sbatch_on_path")
def test_the_tasks_the_launcher_is_told_to_start_count_not_the_login_node(tmp_path, capsys):
    # 96 = 1 x 24 x 4 on 3 nodes of 8; with 6 tasks a node (18 processes) it does not divide.
    preflight([*SEVEN_B, "data.global_batch_size=96", "trainer.num_nodes=3"], tmp_path)
    line = refusal(
        capsys,
        [*SEVEN_B, "data.global_batch_size=96", "trainer.num_nodes=3", "hydra.launcher.tasks_per_node=6"],
        tmp_path,
    )
    assert "x 18 processes" in line and "3 nodes x 6 tasks per node" in line


@pytest.mark.usefixtures("sbatch_on_path")
@pytest.mark.parametrize("devices", ["0", "-2"])
def test_a_device_count_no_job_can_use_is_refused_before_submission(tmp_path, capsys, devices):
    line = refusal(capsys, [*SEVEN_B, f"trainer.devices={devices}"], tmp_path)
    assert f"trainer.devices: {devices}" in line and "job #0" in line


@pytest.mark.usefixtures("sbatch_on_path")
def test_more_devices_than_the_gpus_asked_of_slurm_is_refused(tmp_path, capsys):
    line = refusal(capsys, [*SEVEN_B, "trainer.devices=8", "hydra.launcher.gpus_per_node=4"], tmp_path)
    assert "trainer.devices: 8" in line


def test_a_local_sweep_value_the_processes_do_not_divide_is_refused_before_the_first_job(tmp_path, capsys):
    line = refusal(
        capsys, ["model=tiny", "trainer=cpu", "data.global_batch_size=8,6", "data.micro_batch_size=4"], tmp_path
    )
    assert "data.global_batch_size=6" in line and "sweep value data.global_batch_size=6" in line


@pytest.mark.usefixtures("sbatch_on_path")
def test_a_gpu_device_this_login_node_lacks_is_left_to_the_nodes_the_sweep_runs_on(tmp_path):
    """evaluate.py -m device=cuda under SLURM, submitted from a login node without a GPU: the jobs run on GPU
    nodes, so the preflight checks the setting's form, not this machine's GPUs."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.sweep_preflight import SweepPreflight

    overrides = ["device=cuda", "model=tiny", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=1"]
    overrides += ["hydra.launcher.tasks_per_node=1", "hydra.launcher.nodes=1", f"hydra.sweep.dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = (
            GlobalHydra.instance().config_loader().load_configuration("evaluate", overrides, run_mode=RunMode.MULTIRUN)
        )
        SweepPreflight().on_multirun_start(config=config, config_name="evaluate")
