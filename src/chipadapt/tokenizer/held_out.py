"""The documents DAPT holds out for validation, kept out of token selection, and the token saving on them.

DAPT holds out a source's documents by a hash of their ids (`data.val_fraction`; a source with
`val_split: null` holds none out: data/holdout.py). The domain tokenizer is trained and its tokens
chosen on the other documents only: a token chosen because a held-out document repeats it would make
the augmented-vs-base held-out bits/byte comparison, and the saving itself, look better than they are.
The saving on the held-out documents is the figure that says what the tokenizer does on text it never
read: both tokenizers count the same documents, so its 95% interval comes from a paired test over
documents (eval/paired.py: exact over 16 documents or fewer, unbounded over 5 or fewer).
"""

import logging

from chipadapt.data.holdout import held_out_mask, text_digest, without_copies
from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.sources import Document
from chipadapt.eval.paired import PairedDifference, paired_bootstrap
from chipadapt.tokenizer.words import token_count, word_counts

log = logging.getLogger(__name__)


def split_documents(docs: list[Document], spec: SourceSpec, fraction: float | None) -> tuple[list, list]:
    """(training documents, held-out documents) of one source, by the rule DAPT's blend uses."""
    mask = held_out_mask([d.doc_id for d in docs], float(fraction or 0.0) if spec.val_split else 0.0)
    return [d for d, held in zip(docs, mask) if not held], [d for d, held in zip(docs, mask) if held]


def without_held_copies(split: dict[str, tuple[list, list]]) -> tuple[dict[str, tuple[list, list]], dict[str, int]]:
    """`split` (per source: training, held-out documents) less the training documents whose text is a
    held-out one's, of any source, under another id; and how many each source lost. Held out by id
    only, a copy would choose tokens for the text the saving is then measured on."""
    held = {text_digest(d.text) for _, docs in split.values() for d in docs}
    out, dropped = {}, {}
    for name, (train, docs) in split.items():
        kept, dropped[name] = without_copies(train, lambda d: text_digest(d.text), held)
        out[name] = (kept, docs)
    if any(dropped.values()):
        log.warning(
            "tokenizer: left out of token selection %d document(s) whose text is a held-out document's under "
            "another id: %s (tokenizer_report.json: documents.*.held_out_copies_dropped)",
            sum(dropped.values()),
            ", ".join(f"{n} of {name}" for name, n in dropped.items() if n),
        )
    return out, dropped


def token_ratio(before: list[int], after: list[int]) -> PairedDifference | None:
    """sum(after) / sum(before) - 1 with its interval, the same documents resampled (or swapped) for
    both tokenizers: negative where the augmented tokenizer needs fewer tokens."""
    if not before or sum(before) == 0:
        return None
    return paired_bootstrap(before, before, after, before)


def _row(before: list[int], after: list[int], chars: int) -> dict:
    row = {
        "documents": len(before),
        "chars": chars,
        "tokens_before": sum(before),
        "tokens_after": sum(after),
        "tokens_per_char_before": sum(before) / max(chars, 1),
        "tokens_per_char_after": sum(after) / max(chars, 1),
        "reduction_pct": 100 * (sum(before) - sum(after)) / max(sum(before), 1),
    }
    paired = token_ratio(before, after)
    if paired is not None:  # fewer tokens = -(ratio - 1): the interval's ends swap
        row |= {"reduction_ci_pct": [-100 * paired.ci[1], -100 * paired.ci[0]], "p": paired.p, "test": paired.test}
    return row


def held_out_rows(family, base, extended, docs_by_source: dict[str, list[Document]]) -> dict:
    """Per source with held-out documents, and pooled over them ("overall") when several: documents,
    tokens before and after, the saving in percent and its paired 95% interval over documents."""
    counts = {
        name: [
            (token_count(base, words), token_count(extended, words), len(d.text))
            for d in docs
            for words in (word_counts(family, [d.text]),)
        ]
        for name, docs in docs_by_source.items()
        if docs
    }
    rows = {name: _row([b for b, _, _ in c], [a for _, a, _ in c], sum(n for *_, n in c)) for name, c in counts.items()}
    if len(rows) > 1:
        pooled = [item for c in counts.values() for item in c]
        rows["overall"] = _row([b for b, _, _ in pooled], [a for _, a, _ in pooled], sum(n for *_, n in pooled))
    return rows
