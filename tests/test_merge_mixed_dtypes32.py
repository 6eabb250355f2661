"""A chip model whose float tensors are of several dtypes (norms kept in float32 beside bfloat16 weights,
as real checkpoints have them). merge.out_dtype=null writes each float tensor in the chip model's dtype
for it; mergekit has no per-tensor dtype, so the exported mergekit_config.yml leaves dtype and out_dtype
null (a rerun from it is the same merge, the same job) and says why in one line; the manifest counts the
tensors written in each dtype. With merge.out_dtype set, every float tensor is cast to it, as mergekit's
out_dtype does."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers.merge_jobs import merge_cfg, tiny_pair
from safetensors.torch import load_file, save_file

from chipadapt.errors import ChipadaptError
from chipadapt.merge.mergekit_config import overrides_from_mergekit
from chipadapt.merge.run import run


def keep_norms_in_float32(folder) -> None:
    """The folder's weights in bfloat16 except its norms (float32), its config.json saying bfloat16."""
    path = folder / "model.safetensors"
    weights = {
        name: tensor if "norm" in name else tensor.to(torch.bfloat16) for name, tensor in load_file(path).items()
    }
    save_file(weights, path, metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config.update({key: "bfloat16" for key in ("dtype", "torch_dtype") if key in config})
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def mixed_pair(tmp_path):
    chip, instruct = tiny_pair(tmp_path)
    keep_norms_in_float32(chip)
    return chip, instruct


def written(job) -> dict[str, torch.dtype]:
    return {name: tensor.dtype for name, tensor in load_file(job / "model" / "model.safetensors").items()}


def exported(job) -> tuple[str, dict]:
    text = (job / "model" / "mergekit_config.yml").read_text()
    return text, yaml.safe_load(text)


def test_a_null_out_dtype_keeps_each_tensors_dtype_and_the_export_says_mergekit_cannot(tmp_path, mixed_pair):
    chip, instruct = mixed_pair
    chip_dtypes = {name: tensor.dtype for name, tensor in load_file(chip / "model.safetensors").items()}
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, "merge.lam=0.4"))
    assert written(job) == chip_dtypes and {torch.float32, torch.bfloat16} == set(chip_dtypes.values())

    text, recipe = exported(job)
    # Neither key may name one dtype: mergekit (and merge.py config=) writes every tensor in it.
    assert recipe["dtype"] is None and recipe["out_dtype"] is None
    notes = [line for line in text.splitlines() if "out_dtype" in line and line.startswith("#")]
    counts = {"bfloat16": sum(d == torch.bfloat16 for d in chip_dtypes.values())}
    counts["float32"] = len(chip_dtypes) - counts["bfloat16"]
    mixes = f"models.chip mixes bfloat16: {counts['bfloat16']}, float32: {counts['float32']}"
    assert len(notes) == 1 and mixes in notes[0]
    # What mergekit writes with them null: chipalign's tensors come out in its base_model's (the instruct
    # model's) stored dtype, not in the inputs' (nor float32).
    assert "in its base_model's (models.instruct's) stored dtype" in notes[0] and "not in float32" not in notes[0]

    manifest = json.loads((job / "model" / "merge_manifest.json").read_text())
    assert manifest["summary"]["dtypes"] == counts

    # merge.py config=mergekit_config.yml: the same settings (passed as this job, nothing merged again)...
    overrides = overrides_from_mergekit(job / "model" / "mergekit_config.yml")
    assert not any(o.startswith("merge.out_dtype=") for o in overrides)
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    run(merge_cfg(chip, instruct, job, *overrides))
    assert model.stat().st_mtime_ns == stamp
    # An export from before such a null was exported as null said out_dtype: float32 (the first tensor's
    # dtype): its rerun is another merge, refused with the reason no out_dtype is the null.
    refusal = rf"merge.out_dtype: None -> 'float32' \({mixes}; no one out_dtype writes what null wrote\)"
    with pytest.raises(ChipadaptError, match=refusal):
        run(merge_cfg(chip, instruct, job, *overrides, "merge.out_dtype=float32"))
    # ...and, run into another folder, the same tensors in the same dtypes.
    again = tmp_path / "again"
    run(merge_cfg(chip, instruct, again, *overrides))
    first, second = load_file(model), load_file(again / "model" / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert second[name].dtype == first[name].dtype and torch.equal(second[name], first[name]), name


def test_a_set_out_dtype_casts_every_float_tensor_as_mergekit_does(tmp_path, mixed_pair):
    chip, instruct = mixed_pair
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job, "merge.out_dtype=bfloat16"))
    assert set(written(job).values()) == {torch.bfloat16}
    text, recipe = exported(job)
    assert recipe["dtype"] == "float32" and recipe["out_dtype"] == "bfloat16"
    manifest = json.loads((job / "model" / "merge_manifest.json").read_text())
    assert manifest["summary"]["dtypes"] == {"bfloat16": len(written(job))}


def test_one_float_dtype_that_config_json_contradicts_is_not_exported_as_the_dtype_written(tmp_path):
    """All float tensors bfloat16 but config.json saying float32: merge.out_dtype=bfloat16 would rewrite
    config.json, so the null is no bfloat16; exported as null, and the rerun is the same job."""
    chip, instruct = tiny_pair(tmp_path)
    path = chip / "model.safetensors"
    save_file({n: t.to(torch.bfloat16) for n, t in load_file(path).items()}, path, metadata={"format": "pt"})
    config = json.loads((chip / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float32"
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job))
    text, recipe = exported(job)
    assert recipe["out_dtype"] is None and recipe["dtype"] is None
    # The tensors out_dtype=bfloat16 writes are these; config.json is the difference, and the line says so.
    (note,) = [line for line in text.splitlines() if line.startswith("# out_dtype")]
    assert "all bfloat16 but its config.json says float32" in note and "only config.json's dtype differs" in note
    assert "mixes" not in note
    written_config = json.loads((job / "model" / "config.json").read_text())
    assert written_config.get("dtype", written_config.get("torch_dtype")) == "float32"  # the chip's, kept
    model = job / "model" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    run(merge_cfg(chip, instruct, job, *overrides_from_mergekit(job / "model" / "mergekit_config.yml")))
    assert model.stat().st_mtime_ns == stamp
    with pytest.raises(ChipadaptError, match=r"'bfloat16' \(models.chip's float tensors are all bfloat16 but its"):
        run(merge_cfg(chip, instruct, job, "merge.out_dtype=bfloat16"))


def test_an_integer_tensor_stored_first_is_not_exported_as_the_dtype_written(tmp_path):
    """safetensors stores 8-byte dtypes first: an int64 buffer (position ids) was the first tensor, and its
    dtype was exported as out_dtype, which merge.py config= then refused."""
    from chipadapt.merge.io import SafetensorsModel

    chip, shared_instruct = tiny_pair(tmp_path)
    instruct = Path(shutil.copytree(shared_instruct, tmp_path / "instruct", ignore=shutil.ignore_patterns(".*")))
    for folder in (chip, instruct):
        path = folder / "model.safetensors"
        save_file({**load_file(path), "model.position_ids": torch.arange(8)}, path, metadata={"format": "pt"})
    assert SafetensorsModel(str(chip), "models.chip").names()[0] == "model.position_ids"
    job = tmp_path / "run"
    run(merge_cfg(chip, instruct, job))
    assert written(job)["model.position_ids"] == torch.int64
    _, recipe = exported(job)
    assert recipe["dtype"] == recipe["out_dtype"] == "float32"
    manifest = json.loads((job / "model" / "merge_manifest.json").read_text())
    assert manifest["summary"]["dtypes"] == {"float32": len(written(job)) - 1, "int64": 1}
    assert "merge.out_dtype=float32" in overrides_from_mergekit(job / "model" / "mergekit_config.yml")


def test_a_float_dtype_no_out_dtype_names_stands_for_no_out_dtype(tmp_path):
    """float64 weights are written as float64 under a null merge.out_dtype, which no recipe's out_dtype
    (nor merge.out_dtype) can say: no value to export or to read a null as."""
    from chipadapt.merge.dtypes import no_out_dtype_reason, written_dtype
    from chipadapt.merge.io import SafetensorsModel

    chip, _ = tiny_pair(tmp_path)
    path = chip / "model.safetensors"
    save_file({n: t.to(torch.float64) for n, t in load_file(path).items()}, path, metadata={"format": "pt"})
    config = json.loads((chip / "config.json").read_text())
    (chip / "config.json").write_text(json.dumps({**config, **{k: "float64" for k in ("dtype", "torch_dtype")}}))
    model = SafetensorsModel(str(chip), "models.chip")
    assert {model.dtype(name) for name in model.names()} == {torch.float64} and written_dtype(model) is None
    assert "float64, which no out_dtype (float32, bfloat16, float16)" in no_out_dtype_reason(model)


def test_the_export_says_whose_dtype_mergekit_writes_for_each_method(tmp_path):
    """mergekit's methods return their base_model's dtype (slerp, task_arithmetic, ties, della) or, for
    linear, the promotion of the inputs': the export names that model, not the inputs' stored dtypes."""
    from types import SimpleNamespace

    from chipadapt.merge.mergekit_export import write_mergekit_config

    rows = [{"tensor": "w", "lam": 0.5}]
    method = SimpleNamespace(scale=1.0, density=0.5, epsilon=0.1)
    expected = {
        "slerp": "its base_model's (models.instruct's)",
        "ties": "its base_model's (models.base's)",
        "linear": "the wider of models.chip's and models.instruct's",
    }
    for name, whose in expected.items():
        models = SimpleNamespace(chip="chip", instruct="instruct", base="base" if name == "ties" else None)
        cfg = SimpleNamespace(merge=SimpleNamespace(name=name, method=method, chat_template=None), models=models)
        dest = tmp_path / f"{name}.yml"
        write_mergekit_config(dest, cfg, rows, None, dtype_reason="models.chip mixes bfloat16: 2, float32: 1")
        (note,) = [line for line in dest.read_text().splitlines() if line.startswith("# out_dtype")]
        assert f"writes each tensor in {whose} stored dtype" in note and "mixes bfloat16: 2, float32: 1" in note
