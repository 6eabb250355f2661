"""`retrieval`: hit@k, recall@k and MRR@10 of several retrievers on one passages + queries pair.

Writes each retriever's ranked ids per query to `retrieval_hits/<name>.jsonl` in the run folder.
"""

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.atomic import write_text_atomic
from chipadapt.retrieval.build import load_passages, make_retrievers
from chipadapt.retrieval.metrics import retrieval_metrics
from chipadapt.retrieval.queries import read_queries

log = logging.getLogger(__name__)


class RetrievalTask:
    needs_model = False  # compares retrievers; no causal LM is loaded for it

    def __init__(self, passages: str | None, build: DictConfig, queries: str, encoders: DictConfig, dense: DictConfig,
                 bm25: DictConfig | None, hybrid: DictConfig | None, ks: list[int], mrr_k: int, limit: int | None,
                 output_dir: str, index_dir: str | None):
        plain = lambda c: OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c  # noqa: E731
        self.passages_path, self.build, self.queries_path = passages, plain(build), queries
        self.encoders, self.dense, self.bm25, self.hybrid = plain(encoders), plain(dense), plain(bm25), plain(hybrid)
        self.ks, self.mrr_k, self.limit = list(ks), mrr_k, limit
        self.output_dir, self.index_dir = Path(output_dir), index_dir

    def run(self, model=None, tokenizer=None) -> dict[str, dict[str, float]]:
        passages = load_passages(self.passages_path, self.build)
        queries = read_queries(self.queries_path, known_ids={p.id for p in passages})[: self.limit]
        retrievers = make_retrievers(self.encoders, self.dense, self.bm25, self.hybrid, self.index_dir)
        results = {}
        for name, retriever in retrievers.items():
            start = time.perf_counter()
            retriever.index(passages)
            index_s = time.perf_counter() - start
            start = time.perf_counter()
            hits = retriever.search([q.query for q in queries], max([*self.ks, self.mrr_k]))
            search_s = time.perf_counter() - start
            metrics = retrieval_metrics([[pid for pid, _ in row] for row in hits], [q.positive_ids for q in queries], self.ks, self.mrr_k)
            if not getattr(retriever, "reuses_parts", False):  # a hybrid searches its parts' indexes
                metrics["passages_per_s"] = round(len(passages) / max(index_s, 1e-9), 1)
            metrics["ms_per_query"] = round(1000 * search_s / len(queries), 2)
            results[name] = metrics
            lines = [json.dumps({"id": q.id, "query": q.query, "positive_ids": list(q.positive_ids), "hits": row}) for q, row in zip(queries, hits)]
            write_text_atomic(self.output_dir / "retrieval_hits" / f"{name}.jsonl", "\n".join(lines) + "\n")
            log.info("retrieval %s: hit@8 %.3f mrr@10 %.3f", name, metrics.get("hit@8", float("nan")), metrics.get(f"mrr@{self.mrr_k}", float("nan")))
        results["passages"] = len(passages)
        return results
