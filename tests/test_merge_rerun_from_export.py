"""merge.py config=mergekit_config.yml into the folder of the merge that wrote it: the export names the
dtype written and the template taken where the first run left merge.out_dtype and merge.chat_template
null, and the rerun was refused as "merged with other settings". A null and the value it resolves to are
one setting; a value that differs from what the null resolved to is still refused."""

import json
from pathlib import Path

import pytest
from conftest import CONF, compose
from helpers.models import perturbed_copy
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from chipadapt.errors import ChipadaptError
from chipadapt.merge.mergekit_config import overrides_from_mergekit
from chipadapt.merge.run import run


@pytest.fixture
def pair(tmp_path):
    """The tiny model as `instruct` and a perturbed copy as `chip`."""
    from chipadapt.models.hf_folder import resolve_model_folder

    instruct = resolve_model_folder(compose(["model=tiny"], tmp_path / "unused").model)
    return perturbed_copy(instruct, tmp_path / "chip"), instruct


def merge_cfg(chip, instruct, run_dir: Path, *extra: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            "merge",
            overrides=[
                f"models.chip={chip}",
                f"models.instruct={instruct}",
                f"paths.output_dir={run_dir}",
                f"output={run_dir / 'model'}",
                *extra,
            ],
        )


def exported(run_dir: Path) -> list[str]:
    """The overrides `config=RUN/model/mergekit_config.yml` stands for, models as the export names them."""
    return overrides_from_mergekit(run_dir / "model" / "mergekit_config.yml")


def test_a_rerun_from_the_exported_config_is_the_same_job(tmp_path, pair):
    chip, instruct = pair
    job = tmp_path / "run"
    first = run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    recorded = json.loads((job / "manifest.json").read_text())["config"]["merge"]
    assert recorded["out_dtype"] is None and recorded["chat_template"] is None
    overrides = exported(job)
    assert "merge.out_dtype=float32" in overrides and any(o.startswith("merge.chat_template=") for o in overrides)
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    again = run(merge_cfg(chip, instruct, job, *overrides))
    assert again["lam"] == first["lam"] == 0.4 and model.stat().st_mtime_ns == stamp


def test_the_original_command_after_a_merge_from_the_export_is_the_same_job(tmp_path, pair):
    """The other way round: the values set first, then left null."""
    chip, instruct = pair
    source = tmp_path / "source"
    run(merge_cfg(chip, instruct, source, "merge.lam=0.4"))
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, *exported(source)))
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    assert model.stat().st_mtime_ns == stamp


def test_a_rerun_whose_effective_settings_differ_is_still_refused(tmp_path, pair):
    chip, instruct = pair
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    overrides = [o for o in exported(job) if not o.startswith("merge.out_dtype=")]
    with pytest.raises(ChipadaptError, match=r"other settings: merge.out_dtype: None -> 'bfloat16'; overwrite"):
        run(merge_cfg(chip, instruct, job, *overrides, "merge.out_dtype=bfloat16"))
    other = "{% for m in messages %}{{ m.content }}{% endfor %}"
    with pytest.raises(ChipadaptError, match=r"other settings: merge.chat_template: None -> '\{% for m in"):
        run(merge_cfg(chip, instruct, job, "merge.lam=0.4", f"merge.chat_template='{other}'"))
