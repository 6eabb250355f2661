"""A completed train run's folder named again with other settings is refused (its model/ is kept), and
the refusal names what changed: `completed before with other settings: optim.lr: 5e-05 -> 0.0001`."""

import json

import pytest
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.finished_run import what_changed
from chipadapt.io.outputs import check_output_folder, write_marker


def _completed(out, config: dict, status: str = "completed"):
    (out / "model").mkdir(parents=True)
    write_marker(out / "model", "train")
    (out / "model" / "model.safetensors").write_bytes(b"x")
    (out / "manifest.json").write_text(json.dumps({"kind": "train", "status": status, "config": config}))


def test_the_refusal_names_the_changed_setting(tmp_path):
    config = {"overwrite": False, "optim": {"lr": 5e-05, "weight_decay": 0.1}, "trainer": {"max_steps": 3}}
    _completed(tmp_path, config)
    cfg = OmegaConf.create({**config, "optim": {"lr": 0.0001, "weight_decay": 0.1}})
    with pytest.raises(ChipadaptError) as err:
        check_output_folder(tmp_path / "model", "train", "hydra.run.dir", False, previous=what_changed(cfg, tmp_path))
    assert "holds a previous train output, completed before with other settings: optim.lr: 5e-05 -> 0.0001; " in str(
        err.value
    )
    assert str(err.value).endswith("overwrite=true replaces it")


def test_same_settings_and_a_failed_run_say_so(tmp_path):
    config = {"overwrite": False, "optim": {"lr": 5e-05}}
    _completed(tmp_path / "a", config)
    assert "with these settings but other inputs" in what_changed(OmegaConf.create(config), tmp_path / "a")
    _completed(tmp_path / "b", config, status="failed")
    assert what_changed(OmegaConf.create(config), tmp_path / "b") == " (its run's status: failed)"
    assert what_changed(OmegaConf.create(config), tmp_path / "none") == ""
