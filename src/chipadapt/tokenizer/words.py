"""Pre-tokenized word statistics: the unit BPE works within.

BPE never merges across pre-token boundaries, so a corpus is fully described, for token counting,
by its pre-tokenized words and their counts. Every estimate below works on that table.
"""

from collections import Counter
from collections.abc import Iterable


def word_counts(backend, texts: Iterable[str]) -> Counter:
    """Counts of pre-tokens (in the tokenizer's internal alphabet, e.g. byte-level 'Ġmodule')."""
    counts: Counter = Counter()
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        if pre_tokenizer is None:
            counts[text] += 1
        else:
            counts.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    return counts


def segment(backend, word: str) -> list[str]:
    """The BPE model's segmentation of one pre-token."""
    return [token.value for token in backend.model.tokenize(word)]


def token_count(backend, counts: Counter) -> int:
    return sum(len(backend.model.tokenize(word)) * n for word, n in counts.items())
