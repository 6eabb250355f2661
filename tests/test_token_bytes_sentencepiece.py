"""A SentencePiece-style vocabulary (Llama-2, Mistral, Gemma) counts each piece's own bytes: `▁` a space,
a byte-fallback piece one byte (models/token_bytes.py). Gemma-3's real tokenizer is checked where
tests/test_tokenizer_families.py reads it already (20 s a read)."""

from helpers.sentencepiece_base import sentencepiece_base
from transformers import AutoTokenizer

from chipadapt.models.token_bytes import token_byte_lengths

TEXTS = ["The board shipped 2000 units at 100 MHz.", "héllo wörld ✓", "module top(input clk);\n  assign x = y;\n"]


def counted(tokenizer, lengths, text: str) -> int:
    return int(lengths[tokenizer(text, add_special_tokens=False).input_ids].sum())


def test_a_llama2_style_piece_counts_its_space_and_a_byte_piece_one_byte(tmp_path):
    sentencepiece_base(tmp_path, True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    lengths = token_byte_lengths(tokenizer, len(tokenizer))
    pieces = {p: int(lengths[tokenizer.convert_tokens_to_ids(p)]) for p in ("▁The", "▁", "<0xC3>", "<0x20>")}
    # Decoded alone these were 3, 0, 3 (U+FFFD) and 0 bytes.
    assert pieces == {"▁The": 4, "▁": 1, "<0xC3>": 1, "<0x20>": 1}
    assert any(p.startswith("<0x") for p in tokenizer.tokenize("héllo wörld ✓"))  # byte fallback is used
    for text in TEXTS:
        # Every byte of the text, and the space the tokenizer prepends to a text (Llama-2's dummy prefix):
        # 40 bytes counted 33 before, "héllo wörld ✓" 17 counted 29.
        assert counted(tokenizer, lengths, text) == len(text.encode("utf-8")) + 1
    assert counted(tokenizer, lengths, " two  spaces\n\nx") == len(b" two  spaces\n\nx")  # no prefix added
