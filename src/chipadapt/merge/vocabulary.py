"""The inputs of a merge must share their vocabulary: row r of every embedding is the same token.

Embeddings are merged row by row, so two models whose tokenizers give the same id to different
tokens would be averaged into rows that mean nothing, with no error anywhere. The legitimate
difference is a vocabulary extended by appending tokens: the chip model's domain tokens (ChipNeMo's
augmented tokenizer), or an instruct model's added chat tokens (<|im_start|>, <|im_end|>). Every
tokenizer must then be the longest one's first ids, token for token.

The merged folder carries the longest tokenizer, as mergekit's `tokenizer_source: union` does (with
prefix vocabularies the union is the longest one, ids unchanged): a shorter one would lack the chat
tokens the instruct model's template needs, or the chip model's domain tokens. Rows every tokenizer
has are merged; a row past the shortest tokenizer is one model's token only (in the other model it
is missing, or an untrained padding row of an embedding padded to a multiple of 64), so it is copied
unmerged from the model with the longest tokenizer, as mergekit takes a token found in one model
from that model.

The same ids are not enough: the tokenizers must also cut text into the same words before the ids
(normalizer and pre-tokenizer). A chip model trained on a conversion that lost SmolLM2's digit rule
saw ' 2024' as one word and the instruct model sees five; merged, one of them is fed text split as it
never was, and the output carries only one of the two tokenizers. Such inputs are refused as unrelated
vocabularies are, naming the first sample text the two split differently.
"""

from dataclasses import dataclass

from chipadapt.errors import ChipadaptError
from chipadapt.merge.io import EMBEDDING_MARKERS, SafetensorsModel
from chipadapt.models.safe_load import safe_tokenizer


@dataclass(frozen=True)
class RowPlan:
    """Where the rows of one output embedding come from."""

    merged: int  # rows 0..merged-1 are merged
    rows: int  # rows of the output tensor; merged..rows-1 are copied from `source`
    source: SafetensorsModel


@dataclass(frozen=True)
class SharedVocabulary:
    models: list[SafetensorsModel]  # chip first
    tokens: dict[str, int]  # model key -> ids its tokenizer has (highest id + 1)
    source: SafetensorsModel  # the input whose tokenizer (and rows past the shortest one) the output takes

    @property
    def same(self) -> bool:
        return len(set(self.tokens.values())) == 1

    def row_plan(self, name: str) -> RowPlan | None:
        """None for a tensor that is not a vocabulary embedding (its shapes must then be equal)."""
        shapes = [m.shape(name) for m in self.models]
        if not any(marker in name for marker in EMBEDDING_MARKERS) or any(
            not s or s[1:] != shapes[0][1:] for s in shapes
        ):
            return None
        if self.same:
            # One tokenizer: the rows every tensor has are merged, padding included (untrained in
            # both, so lam=0 and lam=1 still copy an input exactly); a longer chip tensor keeps its own.
            return RowPlan(min(s[0] for s in shapes), self.source.shape(name)[0], self.source)
        merged = min(min(self.tokens[m.key], s[0]) for m, s in zip(self.models, shapes))
        return RowPlan(merged, self.source.shape(name)[0], self.source)

    def summary(self) -> dict:
        return {"tokenizer_from": self.source.key, "tokens": dict(self.tokens)}


def shared_vocabulary(chip: SafetensorsModel, others: list[SafetensorsModel]) -> SharedVocabulary:
    """Refuse inputs whose tokenizers disagree on a shared id, or that have no tokenizer (the merged
    folder is published with one of them, and the comparison needs them all); else which tokenizer
    the output carries: the longest (the chip model's on a tie)."""
    tokenizers = {m.key: safe_tokenizer(m.folder, m.key) for m in (chip, *others)}
    vocabs = {key: _vocab(tokenizer) for key, tokenizer in tokenizers.items()}
    for other in others:
        _check_prefix(other, vocabs[other.key], chip, vocabs[chip.key])
        _check_splitting(other, tokenizers[other.key], chip, tokenizers[chip.key])
    tokens = {key: max(vocab, default=-1) + 1 for key, vocab in vocabs.items()}
    models = [chip, *others]
    source = max(models, key=lambda m: tokens[m.key])  # the first (chip) of the longest
    for other in others:  # two non-chip inputs both longer than the chip's could still disagree
        if other is not source:
            _check_prefix(other, vocabs[other.key], source, vocabs[source.key])
    return SharedVocabulary(models, tokens, source)


def _check_prefix(other: SafetensorsModel, other_vocab: dict, reference: SafetensorsModel, ref_vocab: dict) -> None:
    small, large = (other_vocab, ref_vocab) if len(other_vocab) <= len(ref_vocab) else (ref_vocab, other_vocab)
    differs = sorted(i for i, token in small.items() if large.get(i) != token)
    if differs:
        i = differs[0]
        raise ChipadaptError(
            f"{other.key}: the tokenizer of {other.folder} ({len(other_vocab):,} tokens) is not the one of "
            f"{reference.key} {reference.folder} ({len(ref_vocab):,} tokens), nor a prefix of it: id {i} is "
            f"{other_vocab.get(i)!r} vs {ref_vocab.get(i)!r} in {reference.key} ({len(differs):,} ids differ); "
            "models with unrelated vocabularies cannot be merged row by row"
        )


def _vocab(tokenizer) -> dict[int, str]:
    """id -> token, added tokens included."""
    return {i: token for token, i in tokenizer.get_vocab().items()}


# Where pre-tokenizers that share a vocabulary differ: digit runs, whitespace runs before a digit or a
# word, tabs, CRLF, digits of other scripts, contractions, punctuation, accents (normalizers).
SPLIT_SAMPLES = (
    "x 2024 = 16'h00ff;",
    "a  1\tb\r\n2",
    "\u0663\u0664 \uff15 \u00b2",
    "We'll   don't!!",
    "Caf\u00e9 \u0130stanbul \uff21\uff22",
)


def _words(tokenizer, text: str) -> list[str] | None:
    """The text as the tokenizer cuts it before its model (normalized, pre-tokenized); None for a
    tokenizer without a Rust backend to ask."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    if backend.pre_tokenizer is None:
        return [text]
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def _check_splitting(other: SafetensorsModel, other_tok, reference: SafetensorsModel, ref_tok) -> None:
    for text in SPLIT_SAMPLES:
        mine, theirs = _words(other_tok, text), _words(ref_tok, text)
        if mine is not None and theirs is not None and mine != theirs:
            raise ChipadaptError(
                f"{other.key}: the tokenizer of {other.folder} splits text differently from the one of "
                f"{reference.key} {reference.folder} (normalizer or pre-tokenizer): {text!r} is {mine} vs "
                f"{theirs}; a model trained on one split cannot be merged with one trained on the other "
                "(a chip model trained from a GGUF converted by an earlier version, before its pre-tokenizer's "
                "digit rule: train it again from the folder the current version converts, `--v<N>` in its name)"
            )
