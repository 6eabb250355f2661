"""`retrieval`: hit@k, recall@k and MRR@10 of several retrievers on one passages + queries pair.

Items are queries: each retriever's ranked ids (`prediction`: {retriever: ids}) and scores
(`<retriever>.hit@8`, ...), so retrievers and runs can be compared query by query.
"""

import logging
import time

from omegaconf import DictConfig, OmegaConf

from chipadapt.eval.items import summarize
from chipadapt.retrieval.build import load_passages, make_retrievers
from chipadapt.retrieval.metrics import query_scores
from chipadapt.retrieval.queries import read_queries

log = logging.getLogger(__name__)


class RetrievalTask:
    needs_model = False  # compares retrievers; no causal LM is loaded for it

    def __init__(
        self,
        passages: str | None,
        build: DictConfig,
        queries: str,
        encoders: DictConfig,
        dense: DictConfig,
        bm25: DictConfig | None,
        hybrid: DictConfig | None,
        ks: list[int],
        mrr_k: int,
        limit: int | None,
        index_dir: str | None,
    ):
        plain = lambda c: OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c  # noqa: E731
        self.passages_path, self.build, self.queries_path = passages, plain(build), queries
        self.encoders, self.dense, self.bm25, self.hybrid = plain(encoders), plain(dense), plain(bm25), plain(hybrid)
        self.ks, self.mrr_k, self.limit = list(ks), mrr_k, limit
        self.index_dir = index_dir

    def run(self, model=None, tokenizer=None) -> dict[str, dict[str, float]]:
        passages = load_passages(self.passages_path, self.build)
        queries = read_queries(self.queries_path, known_ids={p.id for p in passages})[: self.limit]
        retrievers = make_retrievers(self.encoders, self.dense, self.bm25, self.hybrid, self.index_dir)
        results = {}
        self.items = [
            {"id": q.id, "query": q.query, "reference": list(q.positive_ids), "prediction": {}, "scores": {}}
            for q in queries
        ]
        for name, retriever in retrievers.items():
            start = time.perf_counter()
            retriever.index(passages)
            index_s = time.perf_counter() - start
            start = time.perf_counter()
            hits = retriever.search([q.query for q in queries], max([*self.ks, self.mrr_k]))
            search_s = time.perf_counter() - start
            for item, q, row in zip(self.items, queries, hits):
                ranked = [pid for pid, _ in row]
                item["prediction"][name] = ranked
                item["scores"].update(
                    {f"{name}.{m}": v for m, v in query_scores(ranked, q.positive_ids, self.ks, self.mrr_k).items()}
                )
            metrics = {**summarize(self.items, prefix=f"{name}."), "queries": len(queries)}
            if not getattr(retriever, "reuses_parts", False):  # a hybrid searches its parts' indexes
                metrics["passages_per_s"] = round(len(passages) / max(index_s, 1e-9), 1)
            metrics["ms_per_query"] = round(1000 * search_s / len(queries), 2)
            results[name] = metrics
            log.info(
                "retrieval %s: hit@8 %.3f mrr@10 %.3f",
                name,
                metrics.get("hit@8", float("nan")),
                metrics.get(f"mrr@{self.mrr_k}", float("nan")),
            )
        results["passages"] = len(passages)
        return results
