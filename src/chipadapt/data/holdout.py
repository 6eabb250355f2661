"""Which examples are held out of training: decided by a hash of each example's id, never by the
seed, so the same examples are held out across seeds, sweeps and blends and validation figures of
different runs compare. Two hashes, because published splits depend on them: documents of the
pretraining corpus (CRC-32 of the document id, as a mask over a source) and records (SHA-256 of a
key: conversations, retriever groups, EDA script pairs)."""

import hashlib
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
