"""Only rank 0 writes a run's manifest.json: another process a launcher started shares the folder. Its failure is
kept beside rank 0's record; a lone process whose cluster set a rank variable writes its own record."""

import json

import pytest
from helpers.launch_env import launched_with
from omegaconf import OmegaConf

from chipadapt.manifest import RunManifest


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    launched_with(monkeypatch)


def test_a_secondary_process_leaves_rank_0s_manifest_as_it_is(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"seed": 1})
    rank_0 = RunManifest(tmp_path, cfg)
    rank_0.update("inputs", {"model": {"path": "m", "fingerprint": "a"}})
    written = (tmp_path / "manifest.json").read_text()

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as Lightning's launcher sets it for the processes it starts
    other = RunManifest(tmp_path, cfg)  # its own start, status and (empty) inputs
    other.update("inputs", {"model": {"path": "m", "fingerprint": "b"}})
    other.finish("completed")
    assert (tmp_path / "manifest.json").read_text() == written
    assert json.loads(written)["inputs"]["model"]["fingerprint"] == "a"
    assert other.data["status"] == "completed"  # kept in memory for the process itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_failing_secondary_process_keeps_its_error_beside_rank_0s_record(tmp_path, monkeypatch):
    """Rank 1's own failure (its out-of-memory, its data) was recorded nowhere: rank 0's manifest names its own end."""
    RunManifest(tmp_path, OmegaConf.create({}))
    written = (tmp_path / "manifest.json").read_text()
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    RunManifest(tmp_path, OmegaConf.create({})).finish("failed", error="OutOfMemoryError: rank 3's own")
    assert (tmp_path / "manifest.json").read_text() == written
    recorded = json.loads((tmp_path / "manifest.rank3.json").read_text())
    assert (recorded["status"], recorded["error"]) == ("failed", "OutOfMemoryError: rank 3's own")


@pytest.mark.parametrize("variables", [{"SLURM_PROCID": "1", "SLURM_NTASKS": "1"}, {"NODE_RANK": "1"}])
def test_a_lone_process_in_whose_environment_a_cluster_left_a_rank_writes_its_record(tmp_path, monkeypatch, variables):
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    RunManifest(tmp_path, OmegaConf.create({})).finish("completed")
    assert json.loads((tmp_path / "manifest.json").read_text())["status"] == "completed"


def test_a_secondary_process_feeds_no_value_to_the_sweeper(tmp_path, monkeypatch):
    """It read rank 0's manifest.json, which had no metrics yet (rank 0 still publishing), and exited 2 with "not a
    metric of this run": torchrun then killed rank 0 in the middle of its publish."""
    from chipadapt.optimized_metric import optimized_value

    cfg = OmegaConf.create({"optimized_metric": "val/domain/bpb", "paths": {"output_dir": str(tmp_path)}})
    RunManifest(tmp_path, OmegaConf.create({}))  # rank 0's attempt, no metrics yet
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun: its RANK is the rank
    mine = RunManifest(tmp_path, OmegaConf.create({}))
    mine.update("metrics", {"after": {"val/domain/bpb": 1.23}})
    mine.finish("completed")
    assert optimized_value(cfg) is None
