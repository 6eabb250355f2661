"""Which examples are held out of training: decided by a hash of each example's id, never by the
seed, so the same examples are held out across seeds, sweeps and blends and validation figures of
different runs compare. Two hashes, because published splits depend on them: documents of the
pretraining corpus (CRC-32 of the document id, as a mask over a source) and records (SHA-256 of a
key: conversations, retriever groups, EDA script pairs). A training record whose content is a held-out
one's is then left out of training (below)."""

import hashlib
import json
import re
import zlib

import numpy as np


def held_out_mask(doc_ids: list[str], fraction: float) -> np.ndarray:
    """Boolean mask of a source's validation documents. A source with at least two documents keeps
    one for validation and one for training whenever fraction > 0."""
    n = len(doc_ids)
    if fraction <= 0 or n < 2:
        return np.zeros(n, dtype=bool)
    scores = np.array([zlib.crc32(d.encode()) / 2**32 for d in doc_ids])
    mask = scores < fraction
    if not mask.any():
        mask[int(np.argmin(scores))] = True
    if mask.all():
        mask[int(np.argmax(scores))] = False
    return mask


def held_out(key: str, fraction: float) -> bool:
    """Whether the record with this key is held out (a fraction of 0 holds out nothing)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


# Held out by id, a text can still be trained on: the same text under another id (a JSONL given twice,
# its lines numbered on; one set of conversations as a chat file and as a dataset, two sources). So what
# is held out is also matched by content, across sources, and each training record with the content of
# a held-out one is left out of training, and counted: `val_duplicates_dropped` (DAPT, SFT: the name their
# manifests have always had), `held_out_copies_dropped` (tokenizer, SteerLM attribute model, retriever,
# reranker), `eval_question_copies_dropped` (retriever, reranker: an evaluation question asked again).
# Exact copies only: a near copy (an edited file) is curation's to find (python -m chipadapt.data.curate).


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def text_digest(text: str) -> bytes:
    """A text's content with whitespace runs made one space, as conversation_digest reads a turn."""
    return _digest(" ".join(text.split()).encode())


def question_digest(question: str) -> bytes:
    """A question's text case-folded, its whitespace runs made one space and its trailing `?`, `.` and `!`
    dropped: a query asked again with another capital, spacing or end mark is the same question. Other
    punctuation counts: `a+b` and `a-b`, `!rst_n` and `rst_n`, `1.5 V` and `1 5 V` are other questions."""
    return _digest(re.sub(r"[\s?.!]+$", "", " ".join(question.casefold().split())).encode())


def without_copies(items: list, digest, held: set[bytes]) -> tuple[list, int]:
    """(the items whose `digest(item)` is not in `held`, how many were left out)."""
    kept = [item for item in items if digest(item) not in held]
    return kept, len(items) - len(kept)


def conversation_digest(messages: list[dict]) -> bytes:
    """A conversation's content, its turns' roles and texts with whitespace runs made one space (a
    trailing newline or re-indented JSON is the same conversation); ids, sources and labels aside."""
    turns = [[m["role"], " ".join(m["content"].split())] for m in messages]
    return _digest(json.dumps(turns, ensure_ascii=False).encode())


def document_copies(sources: list, held: list[np.ndarray], also_held: list | None = None) -> list[np.ndarray]:
    """Per source (a TokenizedSource), a mask of its training documents (`held` False) whose tokens are
    those of a document held out of any source (`held` True) or of a validation-only source
    (`also_held`, every document). Tokens, not text, since the token cache keeps tokens; under one
    tokenizer the same text is the same tokens. Only documents of a held-out one's length are hashed."""
    validation = [(tok, np.flatnonzero(mask)) for tok, mask in zip(sources, held)]
    validation += [(tok, np.arange(tok.num_docs)) for tok in also_held or []]
    lengths = {int(n) for tok, docs in validation for n in np.diff(tok.offsets)[docs]}
    digests = {_digest(tok.doc_tokens(d).tobytes()) for tok, docs in validation for d in docs}
    copies = []
    for tok, mask in zip(sources, held):
        sizes = np.diff(tok.offsets)
        found = np.zeros(tok.num_docs, dtype=bool)
        for d in np.flatnonzero(~mask & np.isin(sizes, list(lengths))):
            found[d] = _digest(tok.doc_tokens(d).tobytes()) in digests
        copies.append(found)
    return copies
