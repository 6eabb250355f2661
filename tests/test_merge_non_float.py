"""Bool and integer tensors are never interpolated by any merge method: equal ones are copied, different
ones are refused before anything is written, or taken from the model `non_float_from` names; and a
merge.schedule pattern that matches no tensor is refused."""

import csv
import json
import shutil

import pytest
import torch
from conftest import compose
from safetensors.torch import load_file, save_file
from test_merge import merge_cfg

from chipadapt.errors import ChipadaptError
from chipadapt.merge.run import run

METHODS = ["chipalign", "linear", "slerp", "task_arithmetic", "ties", "della"]
MASK = "transformer.h.0.attn.bias"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    from chipadapt.models.hf_folder import resolve_model_folder

    return resolve_model_folder(compose(["model=tiny"], tmp_path_factory.mktemp("tiny")).model)


def gpt2_folder(dest, tokenizer_folder, seed: int, mask: torch.Tensor):
    """A one-layer GPT-2 with its causal mask stored as the bool `attn.bias`, as GPT-2 checkpoints
    saved by transformers 4 (and the hub's gpt2) have it; transformers 5 no longer writes it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=512, n_embd=16, n_layer=1, n_head=2, n_positions=8, bos_token_id=1, eos_token_id=2)
    GPT2LMHeadModel(config).save_pretrained(dest)
    weights = {**load_file(dest / "model.safetensors"), MASK: mask}
    save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_folder / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def gpt2_models(tmp_path_factory, tokenizer_folder):
    """(causal chip, causal instruct, all-True instruct, causal base)."""
    root = tmp_path_factory.mktemp("gpt2")
    causal = torch.tril(torch.ones(8, 8, dtype=torch.bool)).view(1, 1, 8, 8)
    everything = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    return (
        gpt2_folder(root / "chip", tokenizer_folder, 0, causal),
        gpt2_folder(root / "instruct", tokenizer_folder, 1, causal),
        gpt2_folder(root / "instruct_all_true", tokenizer_folder, 2, everything),
        gpt2_folder(root / "base", tokenizer_folder, 3, causal),
    )


def diagnostics(out) -> dict[str, dict]:
    with open(out / "merge_diagnostics.csv", newline="") as f:
        return {row["tensor"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("method", METHODS)
def test_a_mask_that_differs_is_refused_naming_it_and_both_models_and_nothing_is_written(tmp_path, gpt2_models, method):
    chip, _, all_true, base = gpt2_models
    out = tmp_path / "merged"
    with pytest.raises(ChipadaptError) as err:
        run(merge_cfg(method, chip, all_true, out, lam=0.3, base=base))
    message = str(err.value)
    assert MASK in message and str(chip) in message and str(all_true) in message and "\n" not in message
    assert not out.exists()


@pytest.mark.parametrize("method", METHODS)
def test_an_equal_mask_is_copied_exactly_by_every_method(tmp_path, gpt2_models, method):
    chip, instruct, _, base = gpt2_models
    out = tmp_path / "merged"
    summary = run(merge_cfg(method, chip, instruct, out, lam=0.3, base=base))
    merged = load_file(out / "model.safetensors")[MASK]
    assert merged.dtype == torch.bool and torch.equal(merged, load_file(chip / "model.safetensors")[MASK])
    row = diagnostics(out)[MASK]
    assert (row["fallback"], row["copied_from"]) == ("non_float_equal", "models.chip")
    assert summary["non_float"][MASK] == "non_float_equal (models.chip)"


@pytest.mark.parametrize("take", ["chip", "instruct"])
def test_non_float_from_takes_the_named_models_mask_and_says_so(tmp_path, gpt2_models, take):
    chip, _, all_true, _ = gpt2_models
    out = tmp_path / "merged"
    run(merge_cfg("chipalign", chip, all_true, out, lam=0.3, extra=[f"merge.non_float_from={take}"]))
    source = {"chip": chip, "instruct": all_true}[take]
    assert torch.equal(load_file(out / "model.safetensors")[MASK], load_file(source / "model.safetensors")[MASK])
    assert diagnostics(out)[MASK]["copied_from"] == f"models.{take}"
    manifest = json.loads((out / "merge_manifest.json").read_text())
    assert manifest["summary"]["non_float"][MASK] == f"non_float_from_{take} (models.{take})"


def test_non_float_from_naming_an_absent_input_or_no_input_is_refused(tmp_path, gpt2_models):
    chip, _, all_true, _ = gpt2_models
    for value, words in (("base", "models.base"), ("mine", "not one of")):
        with pytest.raises(ChipadaptError, match=f"merge.non_float_from: .*{words}"):
            run(merge_cfg("chipalign", chip, all_true, tmp_path / "merged", extra=[f"merge.non_float_from={value}"]))
        assert not (tmp_path / "merged").exists()


def test_a_schedule_pattern_matching_no_tensor_is_refused_before_writing(tmp_path, gpt2_models):
    chip, instruct, _, _ = gpt2_models
    out = tmp_path / "merged"
    schedule = "merge.schedule=[{pattern: 'layerz', lam: 0.8}, {pattern: 'h\\.0\\.', lam: 0.2}]"
    with pytest.raises(ChipadaptError) as err:
        run(merge_cfg("chipalign", chip, instruct, out, lam=0.3, extra=[schedule]))
    message = str(err.value)
    assert message.startswith("merge.schedule[0].pattern: 'layerz' matches no tensor")
    assert "transformer.h.0." in message and "transformer.wte.weight" in message  # names for orientation
    assert not out.exists()
