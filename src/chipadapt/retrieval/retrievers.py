"""Retrievers behind one interface: BM25 (bm25s), dense (faiss inner product), hybrid (score fusion).

retriever.index(passages); hits = retriever.search(queries, k)   # [[(passage_id, score), ...], ...]
"""

import json
import logging
from pathlib import Path

import numpy as np

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.io.hashing import sha256_file
from chipadapt.retrieval.encoder import TextEncoder, resolve_encoder_folder
from chipadapt.retrieval.passages import Passage

log = logging.getLogger(__name__)

Hits = list[list[tuple[str, float]]]
# Letters and digits: identifiers such as `global_placement` and `set_wire_rc` split at the
# underscores, so that a question that says "global placement" matches them.
TOKEN_PATTERN = r"(?u)[^\W_]{2,}"


class BM25Retriever:
    def __init__(self, k1: float, b: float, stemmer: str | None, stopwords: str | None):
        self.k1, self.b, self.stopwords = k1, b, stopwords
        self.stemmer = None
        if stemmer:
            import Stemmer

            self.stemmer = Stemmer.Stemmer(stemmer)

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(
            texts, token_pattern=TOKEN_PATTERN, stopwords=self.stopwords, stemmer=self.stemmer, show_progress=False
        )

    def index(self, passages: list[Passage]) -> None:
        import bm25s

        self.ids, self.indexed = [p.id for p in passages], passages
        self.bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        self.bm25.index(self._tokenize([p.text for p in passages]), show_progress=False)

    def search(self, queries: list[str], k: int) -> Hits:
        k = min(k, len(self.ids))
        docs, scores = self.bm25.retrieve(self._tokenize(queries), k=k, show_progress=False, n_threads=1)
        return [
            [(self.ids[int(d)], float(s)) for d, s in zip(row_d, row_s) if s > 0] for row_d, row_s in zip(docs, scores)
        ]


class DenseRetriever:
    """Exact inner-product search over normalised embeddings (cosine). `index_dir` caches the index.
    `search`: faiss (CPU), torch (a matrix product on the encoder's device), auto (torch on a GPU)."""

    def __init__(
        self,
        encoder_path: str | None,
        encoder_package: str | None,
        pooling: str,
        query_prefix: str,
        passage_prefix: str,
        max_query_tokens: int,
        max_passage_tokens: int,
        batch_size: int,
        search: str,
        device: str = "auto",
        index_dir: str | None = None,
    ):
        self.folder = resolve_encoder_folder(encoder_path, encoder_package)
        self.encoder = TextEncoder(
            self.folder, pooling, query_prefix, passage_prefix, max_query_tokens, max_passage_tokens
        )
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder.to(device).eval()
        if search not in ("auto", "faiss", "torch"):
            raise ChipadaptError(f"dense.search: {search!r} is not one of auto, faiss, torch")
        # auto: a torch matrix product on the GPU when the encoder runs there, faiss on the CPU otherwise.
        self.search_device = device if search == "torch" or (search == "auto" and device != "cpu") else None
        self.torch_index = None
        self.batch_size, self.index_dir = batch_size, Path(index_dir) if index_dir else None

    def _fingerprint(self, passages: list[Passage]) -> dict:
        import hashlib

        digest = hashlib.sha256()
        for p in passages:
            digest.update(p.id.encode() + b"\0" + p.text.encode() + b"\0")
        weights = next(self.folder.glob("*.safetensors"), None)
        return {
            "passages": digest.hexdigest(),
            "count": len(passages),
            "encoder": str(self.folder),
            "encoder_weights": sha256_file(weights) if weights else None,
            "prefix": self.encoder.passage_prefix,
            "max_tokens": self.encoder.max_tokens[False],
        }

    def index(self, passages: list[Passage]) -> None:
        import faiss

        self.ids, self.indexed = [p.id for p in passages], passages
        fingerprint = self._fingerprint(passages) if self.index_dir else None
        if self.index_dir and (self.index_dir / "index.json").is_file():
            if json.loads((self.index_dir / "index.json").read_text()) == fingerprint:
                self.faiss_index = faiss.read_index(str(self.index_dir / "index.faiss"))
                log.info("dense index loaded from %s", self.index_dir)
                self._to_device(self.faiss_index.reconstruct_n(0, self.faiss_index.ntotal))
                return
            log.info("dense index at %s is for other passages or another encoder: rebuilding", self.index_dir)
        vectors = self.encoder.encode(
            [p.text for p in passages],
            is_query=False,
            batch_size=self.batch_size,
            progress=f"embedding {len(passages)} passages",
        )
        self.faiss_index = faiss.IndexFlatIP(vectors.shape[1])
        self.faiss_index.add(vectors)
        self._to_device(vectors)
        if self.index_dir:
            self.save(self.index_dir, fingerprint)

    def _to_device(self, vectors: np.ndarray) -> None:
        if self.search_device is not None:
            from chipadapt.retrieval.torch_search import TorchFlatIndex

            self.torch_index = TorchFlatIndex(vectors, self.search_device)

    def save(self, dest: Path, fingerprint: dict) -> None:
        import faiss

        with atomic_directory(dest) as tmp:
            faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
            write_json_atomic(tmp / "ids.json", self.ids)
            write_json_atomic(tmp / "index.json", fingerprint)

    def search(self, queries: list[str], k: int) -> Hits:
        vectors = self.encoder.encode(queries, is_query=True, batch_size=self.batch_size)
        scores, rows = (self.torch_index or self.faiss_index).search(vectors, min(k, len(self.ids)))
        return [[(self.ids[r], float(s)) for r, s in zip(row_r, row_s) if r >= 0] for row_r, row_s in zip(rows, scores)]


class HybridRetriever:
    """Fuse a sparse and a dense retriever: weighted min-max-normalised scores, or reciprocal rank."""

    def __init__(self, sparse, dense, weight: float, fusion: str, depth: int, rrf_k: int = 60):
        if fusion not in ("minmax", "rrf"):
            raise ChipadaptError(f"hybrid.fusion: {fusion!r} is not one of minmax, rrf")
        self.sparse, self.dense, self.weight, self.fusion, self.depth, self.rrf_k = (
            sparse,
            dense,
            weight,
            fusion,
            depth,
            rrf_k,
        )
        self.reuses_parts = False

    def index(self, passages: list[Passage]) -> None:
        # The parts are often also compared on their own, already indexed over these passages.
        self.reuses_parts = all(getattr(part, "indexed", None) is passages for part in (self.sparse, self.dense))
        for part in (self.sparse, self.dense):
            if getattr(part, "indexed", None) is not passages:
                part.index(passages)

    def _scores(self, hits: list[tuple[str, float]]) -> dict[str, float]:
        if self.fusion == "rrf":
            return {pid: 1.0 / (self.rrf_k + rank + 1) for rank, (pid, _) in enumerate(hits)}
        if not hits:
            return {}
        values = np.array([s for _, s in hits])
        span = values.max() - values.min()
        return {pid: float((s - values.min()) / span) if span > 0 else 1.0 for pid, s in hits}

    def search(self, queries: list[str], k: int) -> Hits:
        out = []
        for sparse_hits, dense_hits in zip(
            self.sparse.search(queries, self.depth), self.dense.search(queries, self.depth)
        ):
            sparse, dense = self._scores(sparse_hits), self._scores(dense_hits)
            fused = {
                pid: self.weight * dense.get(pid, 0.0) + (1 - self.weight) * sparse.get(pid, 0.0)
                for pid in {*sparse, *dense}
            }
            out.append(sorted(fused.items(), key=lambda item: -item[1])[:k])
        return out
