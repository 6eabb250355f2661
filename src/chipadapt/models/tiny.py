"""A tiny randomly initialised Llama with a tiny byte-level BPE tokenizer, for fast tests.

Same family as SmolLM2 (Llama architecture, tied embeddings, ChatML special tokens), so every
code path the real model takes is exercised in seconds. Built once per settings and cached.
"""

import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.sources import read_source
from chipadapt.io.hashing import sha256_file, sha256_json
from chipadapt.io.lock import cache_entry_lock
from chipadapt.models.hf_folder import save_hf_folder

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, the format SmolLM2 uses; written here so the tiny model's chat template matches in kind.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tiny_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=1 << 20,
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


class TinyLlama:
    def __init__(
        self,
        cache_dir: str,
        text_dir: str,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        num_kv_heads: int,
        intermediate_size: int,
        max_position_embeddings: int,
        seed: int,
    ):
        self.cache_dir = Path(cache_dir).expanduser()
        self.text_dir = Path(text_dir)
        self.settings = dict(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            seed=seed,
        )

    @property
    def folder(self) -> Path:
        texts = sorted(
            str(p.relative_to(self.text_dir)) + sha256_file(p) for p in self.text_dir.rglob("*") if p.is_file()
        )
        return self.cache_dir / f"tiny-llama-{sha256_json([self.settings, texts])[:16]}"

    def materialize(self) -> Path:
        folder = self.folder
        if (folder / "config.json").is_file():
            return folder
        with cache_entry_lock(folder):
            if (folder / "config.json").is_file():  # built by another process while this one waited
                return folder
            return self._build(folder)

    def _build(self, folder: Path) -> Path:
        s = self.settings
        docs = read_source(SourceSpec(path=str(self.text_dir), format="folder"), "model.source.text_dir")
        tokenizer = train_tiny_tokenizer([d.text for d in docs], s["vocab_size"])
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=s["hidden_size"],
            intermediate_size=s["intermediate_size"],
            num_hidden_layers=s["num_layers"],
            num_attention_heads=s["num_heads"],
            num_key_value_heads=s["num_kv_heads"],
            max_position_embeddings=s["max_position_embeddings"],
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        # Its own random stream: the run that builds the model must go on with the same global random
        # state as one that finds it cached, or a new head (the attribute model's) starts elsewhere.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s["seed"])
            model = LlamaForCausalLM(config)
        log.info("built tiny Llama (%d parameters) at %s", model.num_parameters(), folder)
        return save_hf_folder(model, tokenizer, folder)
