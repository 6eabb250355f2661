"""The inputs of a merge must share their vocabulary: row r of every embedding is the same token.

Embeddings are merged row by row, so two models whose tokenizers give the same id to different
tokens would be averaged into rows that mean nothing, with no error anywhere. The one legitimate
difference is an augmented vocabulary (the domain tokenizer of ChipNeMo appends tokens to the base
one): the smaller vocabulary must then be the larger one's first ids, token for token.
"""

from chipadapt.errors import ChipadaptError
from chipadapt.merge.io import SafetensorsModel
from chipadapt.models.safe_load import safe_tokenizer


def check_shared_vocabulary(chip: SafetensorsModel, others: list[SafetensorsModel]) -> None:
    """Refuse inputs whose tokenizers disagree on a shared id, or that have no tokenizer (the merged
    folder is published with the chip model's tokenizer, and the comparison needs them all)."""
    chip_vocab = _vocab(chip)
    for other in others:
        other_vocab = _vocab(other)
        small, large = (other_vocab, chip_vocab) if len(other_vocab) <= len(chip_vocab) else (chip_vocab, other_vocab)
        differs = sorted((i for i, token in small.items() if large.get(i) != token))
        if differs:
            i = differs[0]
            raise ChipadaptError(
                f"{other.key}: the tokenizer of {other.folder} ({len(other_vocab):,} tokens) is not the one of "
                f"models.chip {chip.folder} ({len(chip_vocab):,} tokens), nor a prefix of it: id {i} is "
                f"{other_vocab.get(i)!r} vs {chip_vocab.get(i)!r} in models.chip ({len(differs):,} ids differ); "
                "models with unrelated vocabularies cannot be merged row by row"
            )


def _vocab(model: SafetensorsModel) -> dict[int, str]:
    """id -> token, added tokens included."""
    vocab = safe_tokenizer(model.folder, model.key).get_vocab()
    return {i: token for token, i in vocab.items()}
