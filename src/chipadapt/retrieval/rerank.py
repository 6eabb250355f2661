"""Second-stage reranking: a cross-encoder re-scores the first stage's top `top_k` passages.

    reranked = RerankedRetriever(first_stage, Reranker(path=RUN/model, ...))
    reranked.index(passages); reranked.search(queries, k)   # the same interface as every retriever

Passages below the top `top_k` keep the first stage's order after the reranked ones, so hit@20
with top_k=10 still counts the first stage's ranks 11-20. The cross-encoder reads each passage's
text, as stage=reranker trained it (the "Title > Section" line BM25 indexes with `bm25.context` is
not part of it unless `passages.context=true`).
"""

import time

from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.passages import Passage


class Reranker:
    def __init__(
        self, path: str | None, package: str | None, top_k: int, batch_size: int, max_tokens: int, device: str = "auto"
    ):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.scorer = PairScorer(path, package, max_tokens, from_encoder=False).to(device).eval()
        self.top_k, self.batch_size = top_k, batch_size
        self.seconds = 0.0  # time spent re-scoring, for ms/query added over the first stage

    def rerank(self, query: str, hits: list[tuple[str, float]], texts: dict[str, str]) -> list[tuple[str, float]]:
        """`hits` re-ordered: the top `top_k` by the cross-encoder's score, the rest as they were."""
        head, tail = hits[: self.top_k], hits[self.top_k :]
        if not head:
            return hits
        start = time.perf_counter()
        scores = self.scorer.score([query] * len(head), [texts[pid] for pid, _ in head], self.batch_size)
        self.seconds += time.perf_counter() - start
        reranked = sorted(zip((pid for pid, _ in head), scores), key=lambda item: -item[1])
        return reranked + tail


class RerankedRetriever:
    """A first-stage retriever followed by a reranker; `search` fetches at least `top_k` candidates."""

    def __init__(self, first_stage, reranker: Reranker):
        self.first_stage, self.reranker = first_stage, reranker
        self.reuses_parts = False

    def index(self, passages: list[Passage]) -> None:
        self.texts = {p.id: p.text for p in passages}
        self.reuses_parts = getattr(self.first_stage, "indexed", None) is passages
        if not self.reuses_parts:
            self.first_stage.index(passages)

    def search(self, queries: list[str], k: int):
        rows = self.first_stage.search(queries, max(k, self.reranker.top_k))
        return [self.reranker.rerank(q, row, self.texts)[:k] for q, row in zip(queries, rows)]
