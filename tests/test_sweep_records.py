"""A sweep leaves the records of what its folder holds as they were when it is refused: two jobs that
would share a folder are refused before the first runs, a refused job's `.hydra/` and the sweep's
`multirun.yaml` are put back (the trial: `hydra.sweep.subdir=${data.seq_len}` sent both jobs of an lr
sweep into `64/`, the second was refused after the first had trained, and `64/.hydra/` then said
lr=1e-4 beside an lr=1e-3 model; a refused rerun replaced `multirun.yaml`, which W&B names jobs by)."""

import json
from pathlib import Path

import pytest
from conftest import CONF
from helpers.faults import assert_user_error, run_entry, snapshot
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from chipadapt import run_folder_guard
from chipadapt.run_folder_guard import RunFolderGuard, restore_records_after_refusal
from chipadapt.sweep_job_folders import job_folders, shared_folder


def sweep_config(overrides: list[str]):
    """train.py's config as a `-m` command line composes it (Hydra's own node included)."""
    import chipadapt  # noqa: F401  (resolvers)

    return GlobalHydra.instance().hydra.compose_config(
        "train", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
    )


@pytest.mark.parametrize(
    "subdir,shared",
    [
        ("${data.seq_len}", True),  # what the jobs share: both into 64/
        ("${hydra.job.override_dirname}", False),
        (None, False),  # the default, ${hydra.job.num}
    ],
)
def test_the_folder_of_each_job_is_known_before_the_sweep(tmp_path, subdir, shared):
    sweep = tmp_path / "sweep"
    overrides = ["model=tiny", "data.seq_len=64", "optim.lr=1e-3,1e-4", f"hydra.sweep.dir={sweep}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = sweep_config([*overrides, *([f"hydra.sweep.subdir={subdir}"] if subdir else [])])
        folders = job_folders(config, sweep)
    assert [job[-1] for job, _ in folders] == ["optim.lr=0.001", "optim.lr=0.0001"]
    assert all(folder.parent == sweep or sweep in folder.parents for _, folder in folders)
    assert (shared_folder(folders) is not None) == shared
    if subdir is None:
        assert [folder.name for _, folder in folders] == ["0", "1"]


def test_jobs_that_would_share_a_folder_are_refused_before_the_first_runs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model=tiny", "data.seq_len=64", "optim.lr=1e-3,1e-4", "hydra.sweep.subdir=${data.seq_len}"]
    proc = run_entry("train.py", [*args, f"hydra.sweep.dir={sweep}"])
    line = assert_user_error(proc, "hydra.sweep.subdir: jobs #0 (optim.lr=0.001) and #1 (optim.lr=0.0001)")
    assert f"{sweep / '64'}" in line
    assert not sweep.exists()  # no job ran, nothing was written


def _finished_run(folder: Path, lr: str) -> None:
    """What a completed train job leaves that its records describe (no training needed for the test)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / "model").mkdir()
    (folder / "model" / ".chipadapt-output.json").write_text(json.dumps({"command": "train"}))
    (folder / "manifest.json").write_text(json.dumps({"kind": "train", "status": "completed", "lr": lr}))
    (folder / ".hydra" / "overrides.yaml").write_text(f"- model=tiny\n- optim.lr={lr}\n")
    (folder / ".hydra" / "config.yaml").write_text(f"optim:\n  lr: {lr}\n")
    (folder / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    name: train\n")


def test_a_refused_sweep_leaves_its_folders_multirun_yaml_as_it_was(tmp_path):
    sweep = tmp_path / "sweep"
    _finished_run(sweep / "0", "0.001")
    _finished_run(sweep / "1", "0.0001")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  job:\n    name: train\n  overrides:\n    task:\n    - model=tiny\n    - optim.lr=1e-3,1e-4\n"
    )
    before = snapshot(sweep)
    proc = run_entry("train.py", ["-m", "model=tiny", "optim.lr=5e-4,1e-4", f"hydra.sweep.dir={sweep}"])
    assert_user_error(proc, f"{sweep / '0' / 'model'} holds a previous train output")
    after = snapshot(sweep)
    assert {path: after.get(path) for path in before} == before  # multirun.yaml and 0/.hydra/ as they were


def test_a_job_refused_in_a_folder_an_earlier_job_of_the_sweep_wrote_gets_its_records_back(tmp_path, monkeypatch):
    """A sweeper that draws its jobs as it goes (Optuna) can send two into one folder; the folder did
    not exist when the sweep started, so only what the earlier job left can be put back."""
    sweep, folder = tmp_path / "sweep", tmp_path / "sweep" / "64"
    monkeypatch.setattr(run_folder_guard, "_SWEEP", {}, raising=False)
    monkeypatch.setattr(run_folder_guard, "_JOBS", {}, raising=False)
    monkeypatch.setattr(run_folder_guard, "_BEFORE", {})
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = sweep_config(["model=tiny", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=64"])
    guard = RunFolderGuard()
    guard.on_multirun_start(config, config_name="train")
    (sweep / "multirun.yaml").parent.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  job:\n    name: train\n")  # what the sweeper writes

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with open_dict(config):
        config.hydra.runtime.output_dir = str(folder)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", HydraConfig.instance().cfg)  # put back after the test
    HydraConfig.instance().set_config(config)
    # Job 0 runs in a new folder and completes there.
    guard.on_job_start(config)
    _finished_run(folder, "0.001")
    guard.on_job_end(config)
    records = snapshot(folder)
    # Job 1: Hydra writes its .hydra/ into the same folder, then the job is refused.
    guard.on_job_start(config)
    (folder / ".hydra" / "overrides.yaml").write_text("- model=tiny\n- optim.lr=0.0001\n")
    (folder / ".hydra" / "config.yaml").write_text("optim:\n  lr: 0.0001\n")
    restore_records_after_refusal()
    assert snapshot(folder) == records
