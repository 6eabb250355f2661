"""The domain tokenizer's test material: sample texts, a DomainTokenizer with small settings, a tiny
random Llama, and a LLaMA-2-style tokenizer (sentencepiece BPE with byte fallback) on one."""

import json
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.sources import read_source
from chipadapt.tokenizer.augment import DomainTokenizer

RESOURCES = Path(__file__).resolve().parents[2] / "src" / "chipadapt" / "resources"
DOMAIN = RESOURCES / "sample_corpus"
GENERAL = RESOURCES / "sample_general"


def texts(path) -> list[str]:
    return [d.text for d in read_source(SourceSpec(path=str(path)), "test")]


def adapter(
    tmp_path,
    domain=DOMAIN,
    general=GENERAL,
    output="mean",
    starting_bpb=None,
    warmup=None,
    fit=None,
    input_fit=None,
    **settings,
) -> DomainTokenizer:
    defaults = dict(domain_vocab_size=1000, max_new_tokens=60, max_general_per_million=0.0, min_savings=3, max_pieces=6)
    return DomainTokenizer(
        cache_dir=str(tmp_path / "cache"),
        sources=OmegaConf.create({"chip": {"path": str(domain)}}),
        report_general=OmegaConf.create({"prose": {"path": str(general)}}),
        init={"input": "mean", "output": output, "warmup": warmup, "input_fit": input_fit, "fit": fit},
        starting_bpb=starting_bpb,
        **(defaults | settings),
    )


def tiny_llama(vocab_size: int, tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def train_llama2_style(sentencepiece, corpus: Path, prefix: Path, vocab_size: int, split_digits: bool) -> None:
    """sentencepiece BPE as LLaMA-2 trains it (byte fallback, whitespace-only pieces, no normalisation, ids
    unk 0 / bos 1 / eos 2), at toy size: `prefix`.model and .vocab."""
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=split_digits,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )


def build_llama2_style(root: Path, sentencepiece) -> tuple[Path, Path]:
    """LLaMA-2's recipe at toy size: sentencepiece BPE with byte fallback trained on general prose,
    the `tokenizer.model` read by transformers into a fast tokenizer, on a tiny random Llama.
    Returns (folder with tokenizer.json, folder with only tokenizer.model)."""
    corpus = root / "general.txt"
    corpus.write_text("\n".join(texts(GENERAL)))
    train_llama2_style(sentencepiece, corpus, root / "spm", vocab_size=600, split_digits=True)
    only_model = root / "only_model"
    only_model.mkdir()
    shutil.copy(root / "spm.model", only_model / "tokenizer.model")
    (only_model / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False})
    )
    tokenizer = AutoTokenizer.from_pretrained(only_model)
    model = tiny_llama(len(tokenizer), tokenizer)
    model.save_pretrained(only_model)
    fast = root / "fast"
    model.save_pretrained(fast)
    tokenizer.save_pretrained(fast)
    (fast / "tokenizer.model").unlink(missing_ok=True)
    return fast, only_model
