"""A sweep's W&B group is its own: sweeps in `/a/x/sweep` and `/b/x/sweep` were one group (`x_sweep`,
the last two folder names alone), their runs mixed in one table."""

import copy

import pytest
from conftest import ROOT


def test_two_sweep_folders_with_the_same_last_names_are_two_groups(tmp_path):
    from chipadapt.loggers.identity import sweep_group

    a, b = sweep_group("/a/x/sweep"), sweep_group("/b/x/sweep")
    assert a != b and a.startswith("x_sweep_") and b.startswith("x_sweep_")  # still readable
    assert "/" not in a and "/a/" not in a  # a hash, no machine path, goes to the tracker
    assert sweep_group("/a/x/sweep") == a  # the same folder: the same group in every job
    # A relative folder is the folder it names from the launching directory, however it was spelt.
    assert sweep_group("multirun/d/t", cwd=tmp_path) == sweep_group(tmp_path / "multirun" / "d" / "t")
    assert sweep_group("multirun/d/./t", cwd=tmp_path) == sweep_group("multirun/d/t", cwd=tmp_path)


@pytest.fixture
def multirun_job(tmp_path):
    """Hydra's state in job 0 of a sweep with the relative `hydra.sweep.dir=multirun/d/t`, launched from
    `tmp_path/<cwd>`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=["model=tiny"], return_hydra_config=True)

    def job(cwd: str):
        config = copy.deepcopy(cfg)  # set_config makes what it holds read-only
        with open_dict(config):
            config.hydra.mode = RunMode.MULTIRUN
            config.hydra.sweep.dir = "multirun/d/t"
            config.hydra.runtime.cwd = str(tmp_path / cwd)
            config.hydra.job.config_name = "train"
        HydraConfig.instance().set_config(config)

    yield job
    HydraConfig.instance().cfg = None


def test_a_jobs_group_is_its_sweep_folder_from_where_the_sweep_was_launched(multirun_job, tmp_path, monkeypatch):
    from chipadapt.loggers.identity import job_identity, sweep_group

    monkeypatch.chdir(tmp_path)  # a worker process elsewhere than the launching one
    multirun_job("first")
    first = job_identity().group
    assert first == sweep_group(tmp_path / "first" / "multirun" / "d" / "t")
    multirun_job("second")
    assert job_identity().group not in (first, None) and job_identity().group.startswith("d_t_")
