"""Exact (content hash) and near-duplicate (MinHash LSH over word shingles) removal, streaming.

Documents arrive in a fixed order; the first of each cluster is kept. Only hashes and MinHash
signatures stay in memory, never the texts, so the corpus can be far larger than RAM.
"""

import hashlib
import re

import numpy as np
from datasketch import MinHash, MinHashLSH

from chipadapt.errors import ChipadaptError

_WORD = re.compile(r"\w+")
# Signatures are made in workers and rebuilt in the main process: the scheme must be the same.
SCHEME = "affine32"


def content_hash(text: str) -> str:
    # Whitespace-insensitive: re-indented or re-wrapped copies are still exact duplicates.
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def minhash_signature(text: str, num_perm: int, shingle: int) -> np.ndarray:
    words = _WORD.findall(text.lower())
    grams = {" ".join(words[i : i + shingle]).encode() for i in range(max(1, len(words) - shingle + 1))}
    sketch = MinHash(num_perm=num_perm, seed=1, scheme=SCHEME)
    sketch.update_batch(list(grams))
    return sketch.hashvalues


def lsh_index(num_perm: int, threshold: float) -> MinHashLSH:
    """datasketch's LSH index; settings it cannot split into at least 2 bands (too few permutations
    for a high threshold) are a one-line error naming the smallest num_perm that works."""
    try:
        return MinHashLSH(threshold=threshold, num_perm=num_perm)
    except ValueError as err:
        enough = next((n for n in (2**k for k in range(4, 13)) if _splits(n, threshold)), None)
        fix = f"num_perm={enough}" if enough else "a lower threshold"
        raise ChipadaptError(
            f"data.curate.dedup.num_perm: {num_perm} permutations at data.curate.dedup.threshold={threshold} "
            f"({err}); {fix} works"
        ) from None


def _splits(num_perm: int, threshold: float) -> bool:
    try:
        MinHashLSH(threshold=threshold, num_perm=num_perm)
    except ValueError:
        return False
    return True


class Deduplicator:
    def __init__(self, near: bool, num_perm: int, threshold: float):
        self.seen: dict[str, str] = {}  # content hash -> id of the kept document
        self.near = near
        self.num_perm = num_perm
        self.lsh = lsh_index(num_perm, threshold) if near else None
        self.exact_removed = 0
        self.near_removed = 0
        self.clusters: dict[str, list[str]] = {}  # kept id -> removed ids (for the report)

    def check(self, doc_id: str, digest: str, signature: np.ndarray | None) -> str | None:
        """None if the document is kept (and remembered), else the id of the document it duplicates."""
        if digest in self.seen:
            self.exact_removed += 1
            self.clusters.setdefault(self.seen[digest], []).append(doc_id)
            return self.seen[digest]
        if self.near and signature is not None:
            sketch = MinHash(num_perm=self.num_perm, hashvalues=signature, seed=1, scheme=SCHEME)
            matches = self.lsh.query(sketch)
            if matches:
                keeper = min(matches)
                self.near_removed += 1
                self.clusters.setdefault(keeper, []).append(doc_id)
                return keeper
            self.lsh.insert(doc_id, sketch)
        self.seen[digest] = doc_id
        return None
