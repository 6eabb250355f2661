"""Word statistics: the unit BPE works within.

BPE never merges across word boundaries (pre-tokens, or for SentencePiece-style tokenizers the
`▁`-led runs family.py describes), so a corpus is fully described, for token counting, by its
words and their counts. Every estimate below works on that table.
"""

from collections import Counter
from collections.abc import Iterable

from chipadapt.tokenizer.family import TokenizerFamily


def word_counts(family: TokenizerFamily, texts: Iterable[str]) -> Counter:
    """Counts of words, in the tokenizer's internal alphabet (e.g. byte-level 'Ġmodule', '▁module')."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(family.words(text))
    return counts


def segment(backend, word: str) -> list[str]:
    """The BPE model's segmentation of one word."""
    return [token.value for token in backend.model.tokenize(word)]


def token_count(backend, counts: Counter) -> int:
    return sum(len(backend.model.tokenize(word)) * n for word, n in counts.items())
