"""Which held-out text a validation split scores: the same at any seq_len and with any tokenizer.

A cap in sequences (the former `data.val_max_sequences`) scored N x seq_len tokens: other text at
another seq_len, and more text with a tokenizer that puts more bytes into a token (the augmented one),
which defeated bits per byte's purpose. The cap is in bytes of text instead, `data.val_max_bytes` per
split: whole held-out documents in a fixed order until the budget, the last one cut at the token where
the bytes reach it (per-token byte lengths, the bytes bits per byte divides by), so two tokenizers'
texts differ by less than one token. The order is a hash of each document's source and id: it samples
every source of a split (in the order of `data.sources`, the first sources took the whole budget), and
depends on neither the tokenizer nor the seed.

What a run validated on is recorded per split (`record`): its bytes, documents, the bytes of the token
the last document was cut at (the slack between two tokenizers), and a fingerprint of the documents'
ids. compare.py reads it (eval/compare_validation.py). And, where validation predicts every token of the
text (data/packing.py's start_token), `first_token: scored` and the token a document begins after, as
evaluate.py's perplexity records them: a run from before left the first token of each packed row out of
its figures, so its documents carry other bytes and it does not pair with one after. So does the rule a
token's bytes were counted by (`byte_count`, models/token_bytes.py), where it counts otherwise than before
(a SentencePiece-style vocabulary; none for byte-level BPE, whose records pair with earlier ones).

These figures are not evaluate.py's perplexity of the same documents (eval/tasks/perplexity.py), and the
two are never paired: there each document is scored alone, its first token after the tokenizer's bos
(else eos); here each follows model.doc_separator, the prediction of the separator that ends it is scored
as its own (the model learns where a document ends), and a packed row sees the documents before it."""

import hashlib
from dataclasses import dataclass

import numpy as np

from chipadapt.data.token_cache import TokenizedSource
from chipadapt.io.hashing import sha256_json
from chipadapt.scoring_rules import BYTE_COUNT, FIRST_TOKEN, FIRST_TOKEN_SCORED


@dataclass
class ValidationText:
    rows: np.ndarray  # (source index, document index), in reading order
    last_tokens: int | None  # tokens kept of the last document; None: it is whole
    bytes: int
    cut_token_bytes: int  # bytes of the token the last document was cut at (0: none cut)
    keys: list[str]  # "source/document id" of each document read
    # The token the text's first token is predicted after, where every token is (module docstring).
    first_token_context: str | None = None
    # How the token bytes were counted, where it is not as before (models/token_bytes.py byte_count_rule).
    byte_count: str | None = None

    def record(self) -> dict:
        recorded = {
            "bytes": self.bytes,
            "documents": len(self.keys),
            "cut_token_bytes": self.cut_token_bytes,
            "documents_fingerprint": sha256_json(self.keys)[:16],
        }
        if self.first_token_context is not None:  # the marks eval/compare_validation.py compares
            recorded |= {FIRST_TOKEN: FIRST_TOKEN_SCORED, "first_token_context": self.first_token_context}
        if self.byte_count is not None:
            recorded[BYTE_COUNT] = self.byte_count
        return recorded


def reading_order(keys: list[str]) -> np.ndarray:
    """Indices of `keys` in the order validation reads them: by a hash of the key."""
    scores = [hashlib.sha256(f"validation order:{key}".encode()).digest() for key in keys]
    return np.array(sorted(range(len(keys)), key=scores.__getitem__), dtype=np.int64)


def validation_text(
    sources: list[TokenizedSource],
    names: list[str],
    rows: np.ndarray,
    token_bytes: np.ndarray,
    max_bytes: int,
) -> ValidationText:
    """The text of a split: of its held-out `rows` (source index, document index; `names` are the
    sources'), whole documents in reading order until `max_bytes`, the last one cut at the token that
    reaches it. `token_bytes`: bytes per token id."""
    keys = [f"{names[s]}/{sources[s].doc_ids[d]}" for s, d in rows]
    order = reading_order(keys)
    taken, total = [], 0
    for i in order:
        src, doc = rows[i]
        tokens = sources[src].doc_tokens(doc)
        sizes = token_bytes[np.asarray(tokens, dtype=np.int64)]
        size = int(sizes.sum())
        taken.append(i)
        if total + size < max_bytes:
            total += size
            continue
        reached = np.cumsum(sizes) >= max_bytes - total
        kept = int(np.argmax(reached)) + 1  # through the token where the bytes reach the budget
        total += int(sizes[:kept].sum())
        cut = kept < len(tokens)
        return ValidationText(
            rows[taken],
            kept if cut else None,
            total,
            int(sizes[kept - 1]) if cut else 0,
            [keys[j] for j in taken],
        )
    return ValidationText(rows[taken], None, total, 0, [keys[j] for j in taken])
