"""A Llama-2-style SentencePiece tokenizer at toy size, built in a test's folder: what the digit rule
(tokenizer/select_tokens.py) and the byte count (models/token_bytes.py) are tested on."""

import json

import pytest
from transformers import AutoTokenizer

from helpers.tokenizer_material import GENERAL, texts, train_llama2_style


def sentencepiece_base(root, split_digits: bool):
    """A Llama-2-style base at toy size (sentencepiece BPE with byte fallback, read by transformers):
    trained on prose with numbers, its digits split one by one as Llama-2's and Mistral's are, or not."""
    sentencepiece = pytest.importorskip("sentencepiece")
    numbers = [
        f"In {year} the board shipped {year - 1900} units at 100 MHz, 2000 more by {year + 1}."
        for year in range(1990, 2030)
    ]
    (root / "general.txt").write_text("\n".join(texts(GENERAL) + numbers * 5))
    train_llama2_style(
        sentencepiece, root / "general.txt", root / "tokenizer", vocab_size=700, split_digits=split_digits
    )
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": False}))
    return AutoTokenizer.from_pretrained(root).backend_tokenizer
