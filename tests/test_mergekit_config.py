"""mergekit YAML in and out: the same merge through a mergekit recipe and through our overrides."""

import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT
from safetensors.torch import load_file
from test_merge import merge_cfg, tiny_pair  # noqa: F401  (fixture)

from chipadapt.errors import ChipadaptError
from chipadapt.merge.mergekit_config import overrides_from_mergekit
from chipadapt.merge.mergekit_recipe import evaluate
from chipadapt.merge.run import run


def merged_tensors(folder):
    return load_file(folder / "model.safetensors")


def assert_identical(a, b):
    ta, tb = merged_tensors(a), merged_tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


def run_recipe(recipe_path, out):
    overrides = overrides_from_mergekit(recipe_path)
    return run(merge_cfg_from(overrides, out))


def merge_cfg_from(overrides, out):
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("merge", overrides=[*overrides, f"output={out}", f"paths.output_dir={out}.run"])


def test_mergekit_settings_follow_mergekit_semantics():
    assert evaluate(0.3, "x", 0.5) == 0.3
    assert evaluate([0.0, 1.0], "x", 0.25) == 0.25  # a gradient, interpolated at t
    assert evaluate([0.0, 0.5, 1.0], "x", 0.75) == pytest.approx(0.75)
    rules = [{"filter": "self_attn", "value": [0.0, 1.0]}, {"filter": "mlp", "value": 0.9}, {"value": 0.5}]
    assert evaluate(rules, "model.layers.1.self_attn.q_proj.weight", 1.0) == 1.0
    assert evaluate(rules, "model.layers.0.mlp.up_proj.weight", 0.0) == 0.9
    assert evaluate(rules, "model.norm.weight", 1.0) == 0.5
    assert evaluate([{"filter": "mlp", "value": 1}], "model.norm.weight", 0) is None


def test_hand_written_slerp_recipe_with_layer_gradient_equals_our_overrides(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    recipe = tmp_path / "slerp.yml"
    # mergekit's own example shape: one slice over all layers, t by filter, a gradient over the 2 layers.
    recipe.write_text(
        yaml.safe_dump(
            {
                "slices": [
                    {
                        "sources": [
                            {"model": str(instruct), "layer_range": [0, 2]},
                            {"model": str(chip), "layer_range": [0, 2]},
                        ]
                    }
                ],
                "merge_method": "slerp",
                "base_model": str(instruct),
                "parameters": {
                    "t": [{"filter": "self_attn", "value": [0.2, 0.8]}, {"filter": "mlp", "value": 0.9}, {"value": 0.4}]
                },
                "dtype": "bfloat16",
            }
        )
    )
    # The recipe's unfiltered t is merge.lam, not the value most tensors take (attention and MLP's 0.9
    # below), so that merge.lam=X changes what the recipe's default covers.
    mostly_filtered = tmp_path / "mostly_filtered.yml"
    settings = yaml.safe_load(recipe.read_text())
    settings["parameters"]["t"] = [
        {"filter": "self_attn", "value": 0.9},
        {"filter": "mlp", "value": 0.9},
        {"value": 0.4},
    ]
    mostly_filtered.write_text(yaml.safe_dump(settings))
    overrides = overrides_from_mergekit(mostly_filtered)
    assert "merge.lam=0.4" in overrides and "lam:0.9" in overrides[-1]
    run_recipe(recipe, tmp_path / "via_mergekit")
    ours = [
        "merge.schedule=[{pattern: 'layers\\.0\\..*self_attn', lam: 0.2},"
        " {pattern: 'layers\\.1\\..*self_attn', lam: 0.8},"
        " {pattern: 'mlp', lam: 0.9}]"
    ]
    # The recipe's dtype: bfloat16 is what mergekit writes: merge.out_dtype.
    ours.append("merge.out_dtype=bfloat16")
    run(merge_cfg("slerp", chip, instruct, tmp_path / "via_overrides", lam=0.4, extra=ours))
    assert_identical(tmp_path / "via_mergekit", tmp_path / "via_overrides")


def test_hand_written_ties_recipe_equals_our_overrides(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    recipe = tmp_path / "ties.yml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"model": str(chip), "parameters": {"weight": 0.7, "density": 0.5}},
                    {"model": str(instruct), "parameters": {"weight": 0.3, "density": 0.5}},
                ],
                "merge_method": "ties",
                "base_model": str(instruct),
                "parameters": {"lambda": 1.5},
            }
        )
    )
    run_recipe(recipe, tmp_path / "via_mergekit")
    run(
        merge_cfg(
            "ties",
            chip,
            instruct,
            tmp_path / "via_overrides",
            lam=0.7,
            base=instruct,
            extra=["merge.method.density=0.5", "merge.method.scale=1.5"],
        )
    )
    assert_identical(tmp_path / "via_mergekit", tmp_path / "via_overrides")


@pytest.mark.parametrize("method", ["chipalign", "linear", "task_arithmetic", "della"])
def test_every_merge_writes_a_mergekit_config_that_reproduces_it(tmp_path, tiny_pair, method):  # noqa: F811
    chip, instruct = tiny_pair
    first = tmp_path / "first"
    schedule = ["merge.schedule=[{pattern: 'layers\\.1\\.', lam: 0.9}]"]
    run(merge_cfg(method, chip, instruct, first, lam=0.3, base=instruct, extra=schedule))
    written = first / "mergekit_config.yml"
    recipe = yaml.safe_load(written.read_text())
    assert recipe["merge_method"] == method and written.read_text().startswith("# The merge chipadapt ran")
    run_recipe(written, tmp_path / "again")
    assert_identical(first, tmp_path / "again")


def test_unsupported_recipes_are_one_line_errors(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"merge_method": "passthrough", "models": [{"model": str(chip)}]}))
    with pytest.raises(ChipadaptError, match="passthrough"):
        overrides_from_mergekit(bad)
    bad.write_text(
        yaml.safe_dump(
            {
                "merge_method": "ties",
                "base_model": str(instruct),
                "models": [
                    {"model": str(chip), "parameters": {"weight": 0.5, "density": 0.3}},
                    {"model": str(instruct), "parameters": {"weight": 0.5, "density": 0.6}},
                ],
            }
        )
    )
    with pytest.raises(ChipadaptError, match="densities differ"):
        overrides_from_mergekit(bad)
    with pytest.raises(ChipadaptError, match="does not exist"):
        overrides_from_mergekit(tmp_path / "missing.yml")
    bad.write_text("merge_method: slerp\nmodels:\n  - model: [unclosed\n")
    with pytest.raises(ChipadaptError, match=r"bad.yml:4: not valid YAML \("):
        overrides_from_mergekit(bad)


@pytest.mark.integration
def test_merge_cli_reads_a_mergekit_config(tmp_path, tiny_pair):  # noqa: F811
    chip, instruct = tiny_pair
    recipe = tmp_path / "linear.yml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "merge_method": "linear",
                "models": [
                    {"model": str(chip), "parameters": {"weight": 3.0}},
                    {"model": str(instruct), "parameters": {"weight": 1.0}},
                ],
            }
        )
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "merge.py"),
            f"config={recipe}",
            f"output={out}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = yaml.safe_load((out / "mergekit_config.yml").read_text())
    assert written["models"][0]["parameters"]["weight"] == 0.75
    proc = subprocess.run(
        [sys.executable, str(ROOT / "merge.py"), f"config={tmp_path / 'nope.yml'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("chipadapt: error: config:")


@pytest.mark.parametrize("method", ["slerp", "linear", "task_arithmetic", "ties"])
def test_mergekit_itself_reproduces_our_merge_from_the_written_config(tmp_path, tiny_pair, method):  # noqa: F811
    """Runs only where mergekit is importable (it is not a dependency): the written recipe, merged by
    mergekit, gives our tensors to float32 rounding."""
    pytest.importorskip("mergekit")
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    chip, instruct = tiny_pair
    ours = tmp_path / "ours"
    run(
        merge_cfg(
            method,
            chip,
            instruct,
            ours,
            lam=0.3,
            base=instruct,
            extra=["merge.schedule=[{pattern: 'layers\\.1\\.mlp', lam: 0.8}]"]
            + (["merge.method.density=0.5"] if method == "ties" else []),
        )
    )
    recipe = yaml.safe_load((ours / "mergekit_config.yml").read_text())
    theirs = tmp_path / "theirs"
    run_merge(MergeConfiguration.model_validate(recipe), str(theirs), MergeOptions(device="cpu", copy_tokenizer=False))
    mine, other = merged_tensors(ours), merged_tensors(theirs)
    for name, tensor in mine.items():
        reference = other[name if name in other else "model.embed_tokens.weight"]
        torch.testing.assert_close(tensor, reference.to(tensor.dtype), rtol=1e-5, atol=1e-6, msg=name)
