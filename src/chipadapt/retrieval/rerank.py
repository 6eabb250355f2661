"""Second-stage reranking: a cross-encoder re-scores the first stage's top `top_k` passages.

    reranked = RerankedRetriever(first_stage, Reranker(path=RUN/model, ...))
    reranked.index(passages); reranked.search(queries, k)   # the same interface as every retriever

The new order mixes the cross-encoder's score with the first stage's (`weight`, chosen on dev
questions by eval=retrieval, so a reranker that does not help there is given no say).
Passages below the top `top_k` keep the first stage's order after the reranked ones, so hit@20
with top_k=10 still counts the first stage's ranks 11-20. The cross-encoder reads each passage's
text, as stage=reranker trained it (the "Title > Section" line BM25 indexes with `bm25.context` is
not part of it unless `passages.context=true`).
"""

import copy
import time

from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.retrievers import fusion_scores


def mix(head: list[tuple[str, float]], cross: list[float], weight: float) -> list[tuple[str, float]]:
    """The first stage's top passages ordered by weight x the cross-encoder's score + (1 - weight) x the
    first stage's, each min-max scaled over these passages; equal scores keep the first stage's order,
    so weight 0 is the first stage's ranking and 1 the cross-encoder's alone."""
    first = fusion_scores(head, "minmax", 0)
    second = fusion_scores([(pid, c) for (pid, _), c in zip(head, cross)], "minmax", 0)
    scored = [(pid, weight * second[pid] + (1 - weight) * first[pid]) for pid, _ in head]
    order = sorted(range(len(scored)), key=lambda i: (-scored[i][1], i))
    return [scored[i] for i in order]


class Reranker:
    def __init__(
        self,
        path: str | None,
        package: str | None,
        top_k: int,
        batch_size: int,
        max_tokens: int,
        device: str = "auto",
    ):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.scorer = PairScorer(path, package, max_tokens, from_encoder=False, reset_pooler=False).to(device).eval()
        self.top_k, self.batch_size = top_k, batch_size
        self.weight = 1.0  # the cross-encoder's share of each passage's score (`mix`): its order alone until told
        self.seconds = 0.0  # time spent re-scoring, for ms/query added over the first stage

    def with_weight(self, weight: float | None) -> "Reranker":
        """This cross-encoder (the same weights in memory) with its own weight (None: 1.0 until chosen) and timer."""
        other = copy.copy(self)
        other.weight, other.seconds = (1.0 if weight is None else weight), 0.0
        return other

    def cross_scores(self, query: str, head: list[tuple[str, float]], texts: dict[str, str]) -> list[float]:
        start = time.perf_counter()
        scores = self.scorer.score([query] * len(head), [texts[pid] for pid, _ in head], self.batch_size)
        self.seconds += time.perf_counter() - start
        return scores

    def rerank(self, query: str, hits: list[tuple[str, float]], texts: dict[str, str]) -> list[tuple[str, float]]:
        """`hits` re-ordered: the top `top_k` by the mixed score (in [0, 1]), the rest as they were (with the
        first stage's own scores). At weight 0 that is the first stage's order: nothing is scored."""
        head, tail = hits[: self.top_k], hits[self.top_k :]
        if not head or self.weight == 0:
            return hits
        return mix(head, self.cross_scores(query, head, texts), self.weight) + tail


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

    def choose_weight(
        self, queries: list[str], positives: list[tuple[str, ...]], weights: list[float], metric: str, ks, mrr_k: int
    ) -> dict:
        """Set the reranker's `weight` to the one of `weights` that scores best on these questions by
        `metric` (ties: the smaller weight, so with 0 in the grid the first stage is kept unless the
        cross-encoder helps); the cross-encoder scores each question's candidates once for the grid."""
        from chipadapt.retrieval.fusion_choice import mean_metric

        depth, top_k = max([*ks, mrr_k]), self.reranker.top_k
        rows = self.first_stage.search(queries, max(depth, top_k))
        cross = [self.reranker.cross_scores(q, row[:top_k], self.texts) for q, row in zip(queries, rows)]
        tried = {
            w: mean_metric(
                [mix(row[:top_k], c, w) + row[top_k:] for row, c in zip(rows, cross)], positives, metric, ks, mrr_k
            )
            for w in sorted(weights)
        }
        best = max(tried, key=lambda w: (tried[w], -w))
        self.reranker.weight = best
        return {
            "weight": best,
            "metric": metric,
            "questions": len(queries),
            "grid": {str(w): v for w, v in tried.items()},
        }
