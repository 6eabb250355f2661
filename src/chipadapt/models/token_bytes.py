"""Bytes of text each token id stands for, so that validation can report bits per byte: a
tokenizer-independent score that compares runs with the base and the augmented tokenizer."""

import torch


def token_byte_lengths(tokenizer, rows: int) -> torch.Tensor:
    """Tensor of `rows` lengths (embedding rows beyond the tokenizer, i.e. padding, count 0)."""
    backend = tokenizer.backend_tokenizer
    decoder = backend.decoder
    byte_level = decoder is not None and type(decoder).__name__ == "ByteLevel"
    special = set(tokenizer.all_special_ids)
    lengths = torch.zeros(rows, dtype=torch.long)
    for token, token_id in backend.get_vocab(with_added_tokens=True).items():
        if token_id >= rows or token_id in special:
            continue  # special tokens are markup, not text
        if byte_level:
            lengths[token_id] = len(token)  # byte-level BPE: one character per byte
        else:
            lengths[token_id] = len(tokenizer.convert_tokens_to_string([token]).encode("utf-8"))
    return lengths
