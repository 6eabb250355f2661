"""Bytes of text each token id stands for, so that validation can report bits per byte: a
tokenizer-independent score that compares runs with the base and the augmented tokenizer.

A token's bytes are those of its piece (scoring_rules.BYTE_COUNT): byte-level BPE (GPT-2, SmolLM2,
Llama-3) writes one character per byte; a SentencePiece-style vocabulary (Llama-2, Mistral, Gemma)
writes a space as `▁` and, with byte fallback, a byte it has no piece for as `<0xNN>`, one byte each.
Decoding a piece alone gets both wrong: the decoder strips the space a text starts with (`▁The` 3 bytes,
`▁` 0) and a lone byte of a longer character decodes to U+FFFD (3 bytes): "héllo wörld" counted 20 for
its 13 bytes on a Llama-2-style base. A tokenizer that prepends `▁` to a text (Llama-2's dummy prefix)
counts that space too, one byte a document more than its text: evaluate.py's perplexity and training
validation (modules/causal_lm.py) take it off each document (`added_space_bytes`). The perplexity takes
off what the tokenizer prepends to that text; training validation, which has only token ids, always takes
off what it prepends to a text that does not start with a space: a held-out document that does start with
one (to which Metaspace's prepend_scheme first prepends nothing) counts one byte short there.

Only such vocabularies count otherwise than before the rule: their results carry the mark
(`byte_count_rule`), a byte-level one's none, so its earlier results still pair with new ones; one that
prepends a space carries the later mark, since its validation counted that space before.
"""

import json
import re

import torch

from chipadapt.scoring_rules import BYTE_COUNT_NO_ADDED_SPACE, BYTE_COUNT_PIECES

# A byte-fallback piece: one byte of a character the vocabulary has no piece for.
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _space_mark(decoder: dict | None) -> str | None:
    """The character a decoder turns into a space (SentencePiece's `▁`), or None."""
    if not decoder:
        return None
    if decoder.get("type") == "Metaspace":
        return decoder.get("replacement")
    if decoder.get("type") == "Replace" and decoder.get("content") == " ":
        return (decoder.get("pattern") or {}).get("String")
    for part in decoder.get("decoders") or []:  # a Sequence
        if mark := _space_mark(part):
            return mark
    return None


def _vocabulary_kind(tokenizer) -> tuple[bool, str | None, bool]:
    """(byte-level BPE, the space mark, byte fallback) of a fast tokenizer."""
    backend = tokenizer.backend_tokenizer
    decoder = backend.decoder
    byte_level = decoder is not None and type(decoder).__name__ == "ByteLevel"
    described = json.loads(backend.to_str())
    mark = _space_mark(described.get("decoder"))
    byte_fallback = bool((described.get("model") or {}).get("byte_fallback"))
    return byte_level, mark, byte_fallback


def byte_count_rule(tokenizer) -> str | None:
    """The byte_count mark (scoring_rules.py) a result of this tokenizer carries: BYTE_COUNT_PIECES where
    pieces count otherwise than decoded alone (a space mark, byte fallback), BYTE_COUNT_NO_ADDED_SPACE where
    the tokenizer also prepends a space to a text (`added_space_bytes`), None where they count as they
    always did (byte-level BPE, WordPiece): a mark there would unpair every earlier result for nothing."""
    byte_level, mark, byte_fallback = _vocabulary_kind(tokenizer)
    if byte_level or not (mark or byte_fallback):
        return None
    rows = max(tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    added = added_space_bytes(tokenizer, token_byte_lengths(tokenizer, rows))
    return BYTE_COUNT_NO_ADDED_SPACE if any(added) else BYTE_COUNT_PIECES


def added_space_bytes(tokenizer, lengths: torch.Tensor) -> tuple[int, int]:
    """Bytes the tokenizer's pieces count before a text's own: for a text that does not start with a space,
    and for one that does. Llama-2's dummy prefix adds a `▁` to the first (Metaspace's prepend_scheme
    first/always) or to both (a Prepend normalizer); 0 for tokenizers that add nothing. Training validation
    takes the first off every document, so where the two differ a document that starts with a space counts
    one byte short there (evaluate.py's perplexity, which has the text, takes the one it applies)."""

    def extra(text: str) -> int:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        return max(int(lengths[ids].sum()) - len(text.encode("utf-8")), 0)

    return extra("a"), extra(" a")


def token_byte_lengths(tokenizer, rows: int) -> torch.Tensor:
    """Tensor of `rows` lengths (embedding rows beyond the tokenizer, i.e. padding, count 0)."""
    byte_level, mark, byte_fallback = _vocabulary_kind(tokenizer)
    special = set(tokenizer.all_special_ids)
    lengths = torch.zeros(rows, dtype=torch.long)
    for token, token_id in tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).items():
        if token_id >= rows or token_id in special:
            continue  # special tokens are markup, not text
        if byte_level:
            lengths[token_id] = len(token)  # byte-level BPE: one character per byte
        elif byte_fallback and BYTE_PIECE.fullmatch(token):
            lengths[token_id] = 1
        elif mark:
            lengths[token_id] = len(token.replace(mark, " ").encode("utf-8"))
        else:  # another kind of vocabulary (WordPiece's `##`): its decoder knows its marks
            lengths[token_id] = len(tokenizer.convert_tokens_to_string([token]).encode("utf-8"))
    return lengths
