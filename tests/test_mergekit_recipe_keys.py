"""Every key of a mergekit recipe is honoured, refused in one line, or said on stderr: never dropped.

mergekit's own config ignores keys it does not know (pydantic's default); chipadapt refuses them, since
a misspelt `densty` or a stray top-level key would otherwise merge something else than the user meant.
"""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT
from safetensors.torch import load_file
from test_merge import merge_cfg, tiny_pair  # noqa: F401  (fixture)
from test_mergekit_config import merge_cfg_from

from chipadapt.errors import ChipadaptError
from chipadapt.merge.mergekit_config import overrides_from_mergekit
from chipadapt.merge.run import run


def slerp_recipe(chip, instruct, **extra) -> dict:
    recipe = {
        "merge_method": "slerp",
        "base_model": str(instruct),
        "models": [{"model": str(chip)}, {"model": str(instruct)}],
        "parameters": {"t": 0.5},
    }
    recipe.update(extra)
    return recipe


def ties_recipe(chip, instruct, global_params=None, chip_params=None) -> dict:
    return {
        "merge_method": "ties",
        "base_model": str(instruct),
        "models": [
            {"model": str(chip), "parameters": {"weight": 0.6, "density": 0.5, **(chip_params or {})}},
            {"model": str(instruct), "parameters": {"weight": 0.4, "density": 0.5}},
        ],
        "parameters": {"normalize": True, **(global_params or {})},
    }


def write(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_out_dtype_then_dtype_become_the_written_dtype_and_the_float32_math_is_said(
    tmp_path,
    tiny_pair,  # noqa: F811
    capsys,
):
    chip, instruct = tiny_pair
    overrides = overrides_from_mergekit(write(tmp_path / "r.yml", slerp_recipe(chip, instruct, dtype="bfloat16")))
    assert "merge.out_dtype=bfloat16" in overrides
    note = capsys.readouterr().err
    assert "r.yml" in note and "float32" in note and "bfloat16" in note
    both = slerp_recipe(chip, instruct, dtype="float32", out_dtype="float16")
    assert "merge.out_dtype=float16" in overrides_from_mergekit(write(tmp_path / "both.yml", both))
    assert "float32" not in capsys.readouterr().err  # mergekit computes in float32 too: nothing to say
    plain = overrides_from_mergekit(write(tmp_path / "plain.yml", slerp_recipe(chip, instruct)))
    assert not any(o.startswith("merge.out_dtype") for o in plain)  # the chip model's dtype, as mergekit
    with pytest.raises(ChipadaptError, match=r"bad\.yml: out_dtype: 'float8'"):
        overrides_from_mergekit(write(tmp_path / "bad.yml", slerp_recipe(chip, instruct, out_dtype="float8")))


def test_a_bfloat16_recipe_writes_bfloat16_weights_merged_in_float32(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    recipe = write(tmp_path / "r.yml", slerp_recipe(chip, instruct, dtype="bfloat16"))
    run(merge_cfg_from(overrides_from_mergekit(recipe), tmp_path / "bf16"))
    run(merge_cfg("slerp", chip, instruct, tmp_path / "f32", lam=0.5))
    half, full = load_file(tmp_path / "bf16" / "model.safetensors"), load_file(tmp_path / "f32" / "model.safetensors")
    assert half.keys() == full.keys()
    for name, tensor in half.items():
        assert tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor, full[name].to(torch.bfloat16)), name  # float32 math, rounded once
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert yaml.safe_load((tmp_path / "bf16" / "mergekit_config.yml").read_text())["out_dtype"] == "bfloat16"


def test_tokenizer_sources_other_than_union_are_refused(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    for accepted in ({"tokenizer_source": "union"}, {"tokenizer": {"source": "union"}}, {"tokenizer": {}}):
        overrides_from_mergekit(write(tmp_path / "ok.yml", slerp_recipe(chip, instruct, **accepted)))
    for refused, key in (
        ({"tokenizer_source": "base"}, "tokenizer_source"),
        ({"tokenizer_source": str(instruct)}, "tokenizer_source"),
        ({"tokenizer": {"source": "base"}}, "tokenizer.source"),
        ({"tokenizer": {"tokens": {"<x>": {"source": str(chip)}}}}, "tokenizer.tokens"),
        ({"tokenizer": {"pad_to_multiple_of": 64}}, "tokenizer.pad_to_multiple_of"),
        ({"chat_template": "chatml"}, "chat_template"),
    ):
        with pytest.raises(ChipadaptError, match=rf"tok\.yml: {key}") as err:
            overrides_from_mergekit(write(tmp_path / "tok.yml", slerp_recipe(chip, instruct, **refused)))
        assert "\n" not in str(err.value)
    with pytest.raises(ChipadaptError, match="longest vocabulary"):
        overrides_from_mergekit(write(tmp_path / "tok.yml", slerp_recipe(chip, instruct, tokenizer_source="base")))


def test_unknown_keys_and_parameters_are_refused_naming_key_and_file(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    cases = [
        (slerp_recipe(chip, instruct, parameters={"t": 0.5, "foo": 3}), r"parameters\.foo"),
        (slerp_recipe(chip, instruct, dtpye="bfloat16"), "dtpye"),
        (ties_recipe(chip, instruct, chip_params={"densty": 0.5}), r"models\[0\]\.parameters\.densty"),
        (
            slerp_recipe(chip, instruct, models=[{"model": str(chip), "weigth": 1}, {"model": str(instruct)}]),
            r"models\[0\]\.weigth",
        ),
    ]
    for recipe, key in cases:
        with pytest.raises(ChipadaptError, match=rf"unk\.yml: {key}.*unknown") as err:
            overrides_from_mergekit(write(tmp_path / "unk.yml", recipe))
        assert "\n" not in str(err.value)


def test_settings_mergekit_would_apply_differently_are_refused(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    # int8_mask only narrows the dtype of mergekit's sign mask: the same merge, accepted.
    overrides_from_mergekit(write(tmp_path / "ok.yml", ties_recipe(chip, instruct, {"int8_mask": True})))
    with pytest.raises(ChipadaptError, match=r"rescale"):
        overrides_from_mergekit(write(tmp_path / "r.yml", ties_recipe(chip, instruct, {"rescale": True})))
    # mergekit versions read a per-model lambda differently (the first model's, or not at all).
    with pytest.raises(ChipadaptError, match=r"models\[0\]\.parameters\.lambda"):
        overrides_from_mergekit(write(tmp_path / "l.yml", ties_recipe(chip, instruct, chip_params={"lambda": 2})))
    overrides = overrides_from_mergekit(write(tmp_path / "g.yml", ties_recipe(chip, instruct, {"lambda": 2})))
    assert "merge.method.scale=2.0" in overrides
    slices = {
        "merge_method": "slerp",
        "base_model": str(instruct),
        "slices": [
            {
                "sources": [
                    {"model": str(chip), "layer_range": [0, 2]},
                    {"model": str(instruct), "layer_range": [0, 2]},
                ],
                "residual_weight": 0.1,
            }
        ],
        "parameters": {"t": 0.5},
    }
    with pytest.raises(ChipadaptError, match=r"residual_weight"):
        overrides_from_mergekit(write(tmp_path / "s.yml", slices))


@pytest.mark.integration
def test_merge_cli_says_what_a_recipe_changes_before_hydra_starts(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    bad = write(tmp_path / "extra.yml", slerp_recipe(chip, instruct, parameters={"t": 0.5, "foo": 3}))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "merge.py"), f"config={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "parameters.foo" in proc.stderr


def sliced(*sources, **slice_keys) -> dict:
    return {
        "merge_method": "slerp",
        "base_model": "instruct",
        "slices": [{"sources": list(sources), **slice_keys}],
        "parameters": {"t": 0.5},
    }


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({**sliced(), "slices": [{}]}, r"slices\[0\]\.sources: a slice lists its models there .*it has none"),
        (sliced(), r"slices\[0\]\.sources: .*it has none"),
        (
            {**sliced(), "slices": [{"sources": {"model": "chip", "layer_range": [0, 2]}}]},
            r"slices\[0\]\.sources: expected a list, got \{",
        ),
        ({**sliced(), "slices": {"sources": []}}, r"slices: expected a list"),
        (
            sliced({"layer_range": [0, 2]}, {"model": "instruct", "layer_range": [0, 2]}),
            r"slices\[0\]\.sources\[0\]\.model: expected a model's path or name, it is missing",
        ),
        (
            sliced({"model": "chip"}, {"model": "instruct", "layer_range": [0, 2]}),
            r"slices\[0\]\.sources\[0\]\.layer_range: expected \[start, end\].*, it is missing",
        ),
        (sliced({"model": "chip", "layer_range": 2}), r"slices\[0\]\.sources\[0\]\.layer_range: .*got 2"),
        (sliced({"model": "chip", "layer_range": [0]}), r"slices\[0\]\.sources\[0\]\.layer_range: .*got \[0\]"),
        (sliced({"model": "chip", "layer_range": [2, 0]}), r"slices\[0\]\.sources\[0\]\.layer_range: .*got \[2, 0\]"),
        (sliced({"model": None, "layer_range": [0, 2]}), r"slices\[0\]\.sources\[0\]\.model: .*got None"),
        (
            {"merge_method": "slerp", "base_model": "instruct", "models": [{"parameters": {"t": 0.5}}]},
            r"models\[0\]\.model: expected a model's path or name, it is missing",
        ),
        ({"merge_method": "slerp", "models": {"model": "chip"}}, r"models: expected a list"),
    ],
)
def test_malformed_models_and_slices_are_one_line_errors_naming_the_key(tmp_path, recipe, message):
    # Each once ended in a KeyError or TypeError traceback, or in an error about the wrong key.
    with pytest.raises(ChipadaptError, match=rf"bad\.yml: {message}") as err:
        overrides_from_mergekit(write(tmp_path / "bad.yml", recipe))
    assert "\n" not in str(err.value)


@pytest.mark.integration
def test_merge_cli_refuses_a_slice_without_sources_in_one_line(tmp_path):
    bad = write(tmp_path / "empty_slice.yml", {**sliced(), "slices": [{}]})
    proc = subprocess.run(
        [sys.executable, str(ROOT / "merge.py"), f"config={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"chipadapt: error: config={bad}: slices[0].sources: ")
