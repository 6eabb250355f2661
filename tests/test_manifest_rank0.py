"""Only rank 0 writes a run's manifest.json: another process of the same distributed run shares the folder."""

import json

from omegaconf import OmegaConf

from chipadapt.manifest import RunManifest


def test_a_secondary_process_leaves_rank_0s_manifest_as_it_is(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"seed": 1})
    rank_0 = RunManifest(tmp_path, cfg)
    rank_0.update("inputs", {"model": {"path": "m", "fingerprint": "a"}})
    written = (tmp_path / "manifest.json").read_text()

    monkeypatch.setenv("LOCAL_RANK", "1")
    other = RunManifest(tmp_path, cfg)  # its own start, status and (empty) inputs
    other.update("inputs", {"model": {"path": "m", "fingerprint": "b"}})
    other.finish("failed", error="rank 1's own error")
    assert (tmp_path / "manifest.json").read_text() == written
    assert json.loads(written)["inputs"]["model"]["fingerprint"] == "a"
    assert other.data["status"] == "failed"  # kept in memory for the process itself


def test_a_secondary_process_writes_no_manifest_into_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "3")
    RunManifest(tmp_path, OmegaConf.create({})).finish("completed")
    assert not (tmp_path / "manifest.json").exists()
