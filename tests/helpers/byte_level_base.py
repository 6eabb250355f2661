"""A tiny byte-level BPE tokenizer (SmolLM2/Llama-3 style) of the 256-character alphabet and the given merges."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers


def byte_level_base(merges: list[tuple[str, str]], digits: bool = False) -> Tokenizer:
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]) if digits else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    return tok
