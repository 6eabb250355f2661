"""`retrieval`: hit@k, recall@k and MRR@10 of several retrievers on one passages + queries pair.

Items are queries: each retriever's ranked ids (`prediction`: {retriever: ids}) and scores
(`<retriever>.hit@8`, ...), so retrievers and runs can be compared query by query.
`split` picks the questions (dev: for choosing settings, test: reported); the hybrid's fusion is
chosen on the `fusion.tune_on` split and falls back to its better part when fusing does not help
there (retrieval/fusion_choice.py). Figures come per question `type` too, and the questions each
retriever missed are written for a person to read (`misses_file`).
"""

import logging
import time

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.outputs import check_output_file, refuse_overlap_with_inputs
from chipadapt.retrieval.build import (
    check_index_dir,
    load_passages_report,
    make_retrievers,
    passages_named,
    retrieval_inputs,
)
from chipadapt.retrieval.fusion_choice import check_tuning_metric, choose_fusion
from chipadapt.retrieval.metrics import query_scores
from chipadapt.retrieval.misses import is_misses_file, write_misses
from chipadapt.retrieval.queries import gold_without_evidence, read_queries, select_split
from chipadapt.retrieval.timing import timed_search

log = logging.getLogger(__name__)

# Below this many tuning questions a setting chosen among many (a fusion grid, reranker weights) is
# mostly chosen by chance: said, with the count, beside the choice.
FEWEST_TUNING_QUESTIONS = 20


def warn_if_few_tuning_questions(what: str, settings: int, questions: int, split: str) -> None:
    if questions < FEWEST_TUNING_QUESTIONS:
        log.warning(
            "%s: chosen among %d settings on only %d %s question(s) (fewer than %d): the choice is mostly "
            "noise; add %s questions or fix the setting",
            what,
            settings,
            questions,
            split,
            FEWEST_TUNING_QUESTIONS,
            split,
        )


def refuse_run_dir_among_inputs(inputs: list[tuple[str, str]]) -> None:
    """The run folder (hydra.run.dir: evaluate.log, results.json) inside the docs folder the passages are
    built from was indexed with them: the log and the results became passages of the next run, and
    of this one (the log is written before the passages are read)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        refuse_overlap_with_inputs(
            HydraConfig.get().runtime.output_dir, "hydra.run.dir", inputs, "write the run folder somewhere else"
        )


class RetrievalTask(TaskBase):
    needs_model = False  # compares retrievers; no causal LM is loaded for it

    def __init__(
        self,
        passages: str | None,
        build: DictConfig,
        queries: str,
        split: str,
        encoders: DictConfig,
        dense: DictConfig,
        bm25: DictConfig | None,
        hybrid: DictConfig | None,
        fusion: DictConfig | None,
        ks: list[int],
        mrr_k: int,
        limit: int | None,
        index_dir: str | None,
        misses_file: str | None,
        misses_k: int,
        reranker: DictConfig | None = None,
    ):
        """`reranker`: a cross-encoder (stage=reranker's DIR/model) re-scoring the top `top_k` of each
        first stage in `apply_to`, reported as `<name>+rerank` with the milliseconds it adds; its share
        of the score (`weight`) is chosen on the fusion's tuning split unless given."""
        plain = lambda c: OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c  # noqa: E731
        self.passages_path, self.build, self.queries_path, self.split = passages, plain(build), queries, split
        self.encoders, self.dense, self.bm25, self.hybrid = plain(encoders), plain(dense), plain(bm25), plain(hybrid)
        self.fusion = plain(fusion)
        self.ks, self.mrr_k, self.limit = list(ks), mrr_k, limit
        self.index_dir, self.misses_file, self.misses_k = index_dir, misses_file, misses_k
        self.reranker = plain(reranker) if reranker and reranker.get("path") else None
        if self.reranker:
            self._check_rerank_weights()
        inputs = [
            *retrieval_inputs("eval.retrieval", passages, self.build, self.encoders, self.bm25),
            ("eval.retrieval.queries", queries),
            ("eval.retrieval.reranker.path", (self.reranker or {}).get("path")),
        ]
        # Checked now, before any passage is read: the indexes are written into it as each encoder runs.
        check_index_dir(index_dir, "eval.retrieval.index_dir", inputs)
        self._inputs = [(key.removeprefix("eval.retrieval."), str(path)) for key, path in inputs if path]
        refuse_run_dir_among_inputs(inputs)
        if misses_file:  # checked now: the file is written after the whole evaluation
            # Every input, build sources included: a misses file written into the docs folder the passages
            # are built from was indexed by the next run, and its questions retrieved it first.
            refuse_overlap_with_inputs(misses_file, "eval.retrieval.misses_file", inputs)
            check_output_file(misses_file, "eval.retrieval.misses_file", is_misses_file, inputs)

    def inputs(self) -> list[tuple[str, str]]:
        return self._inputs

    def _choose_fusion(self, hybrid, all_queries) -> dict:
        """Fuse the hybrid's parts as chosen on the tuning split (and say how it was chosen)."""
        # fusion.tune_on=null keeps the configured fusion instead of choosing one.
        tune = select_split(
            all_queries, self.fusion["tune_on"], str(self.queries_path), "eval.retrieval.fusion.tune_on"
        )
        texts, depth = [q.query for q in tune], hybrid.depth
        choice = choose_fusion(
            hybrid.sparse.search(texts, depth),
            hybrid.dense.search(texts, depth),
            [q.positive_ids for q in tune],
            self.fusion["grid"],
            self.fusion["metric"],
            self.ks,
            self.mrr_k,
        )
        if choice["use"] == "fused":
            hybrid.fusion, hybrid.weight, hybrid.rrf_k = choice["fusion"], choice["weight"], choice["rrf_k"]
            hybrid.only = None
            setting = f"fused ({choice['fusion']}, weight {choice['weight']}, rrf_k {choice['rrf_k']})"
        else:  # the configured fusion stays as it was: the hybrid does not fuse
            hybrid.only, lost = choice["use"], choice["rejected_fusion"]
            setting = (
                f"{hybrid.only} alone (the best fusion, {lost['fusion']} weight {lost['weight']}, did not beat it)"
            )
        log.info(
            "hybrid: %s; chosen on %d %s questions by %s", setting, len(tune), self.fusion["tune_on"], choice["metric"]
        )
        warn_if_few_tuning_questions("hybrid fusion", len(choice.get("grid") or {}), len(tune), self.fusion["tune_on"])
        return {"tuned_on": self.fusion["tune_on"], **self._tuned_on_reported(self.fusion["tune_on"]), **choice}

    def _check_rerank_weights(self) -> None:
        """Before any work: a given weight, or the grid and the questions to choose one on."""
        r = self.reranker
        share = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1  # noqa: E731
        if r["weight"] is not None:
            if not share(r["weight"]):
                raise ChipadaptError(f"eval.retrieval.reranker.weight: {r['weight']!r} is not a share between 0 and 1")
            return
        if not (self.fusion or {}).get("tune_on"):
            raise ChipadaptError(
                "eval.retrieval.reranker.weight: null chooses it on eval.retrieval.fusion.tune_on, which is not set; "
                "give a weight (1.0 = the cross-encoder's order alone)"
            )
        weights = r.get("weights")
        if not isinstance(weights, list) or not weights or not all(share(w) for w in weights):
            raise ChipadaptError(
                f"eval.retrieval.reranker.weights: {weights!r} is not a list of shares between 0 and 1 "
                "(include 0, the first stage's own order, so that reranking never loses on the tuning questions)"
            )
        check_tuning_metric(self.fusion.get("metric"), self.ks, self.mrr_k)

    def _choose_rerank_weight(self, name: str, reranked, all_queries) -> dict:
        """The cross-encoder's share of `name`'s score, chosen on the fusion's tuning split."""
        tune_on = self.fusion["tune_on"]
        tune = select_split(all_queries, tune_on, str(self.queries_path), "eval.retrieval.fusion.tune_on")
        choice = reranked.choose_weight(
            [q.query for q in tune],
            [q.positive_ids for q in tune],
            self.reranker["weights"],
            self.fusion["metric"],
            self.ks,
            self.mrr_k,
        )
        log.info(
            "%s: cross-encoder weight %s chosen on %d %s questions by %s",
            name,
            choice["weight"],
            len(tune),
            tune_on,
            choice["metric"],
        )
        warn_if_few_tuning_questions(f"{name} cross-encoder weight", len(self.reranker["weights"]), len(tune), tune_on)
        return {"tuned_on": tune_on, **self._tuned_on_reported(tune_on), **choice}

    def _tuned_on_reported(self, tune_on: str) -> dict:
        """Say so when the questions a setting was chosen on are among those reported (split=dev, or all)."""
        if self.split not in (tune_on, "all"):
            return {}
        log.warning(
            "eval.retrieval.split=%s includes the %s questions settings were chosen on: its figures flatter them",
            self.split,
            tune_on,
        )
        return {"chosen_on_reported_questions": True}

    def run(self, model=None, tokenizer=None) -> dict[str, dict[str, float]]:
        passages, cleaning = load_passages_report(self.passages_path, self.build, "eval.retrieval.build")
        all_queries = read_queries(
            self.queries_path,
            known_ids={p.id for p in passages},
            duplicates=cleaning.duplicates if cleaning else None,
            passages_named=passages_named(self.passages_path, self.build, len(passages)),
        )
        stale = gold_without_evidence(all_queries, passages, str(self.queries_path))
        queries = select_split(all_queries, self.split, str(self.queries_path), "eval.retrieval.split")[: self.limit]
        if not queries:  # limit=0: no figure could be computed
            raise ChipadaptError(f"eval.retrieval: no questions left of {self.queries_path} (limit={self.limit})")
        if (self.fusion or {}).get("tune_on"):  # checked before any retriever runs, not after all of them
            select_split(all_queries, self.fusion["tune_on"], str(self.queries_path), "eval.retrieval.fusion.tune_on")
        trivial = [k for k in self.ks if k >= len(passages)]
        if trivial:  # every passage is in the top k: a hit says nothing about the retriever
            log.warning(
                "eval.retrieval.ks: hit@%s over %d passages ranks every passage; those figures are 1 for any retriever",
                ",".join(map(str, trivial)),
                len(passages),
            )
        retrievers = make_retrievers(self.encoders, self.dense, self.bm25, self.hybrid, self.index_dir)
        results = {}
        self.items = [
            {
                "id": q.id,
                "query": q.query,
                "reference": list(q.positive_ids),
                "prediction": {},
                "scores": {},
                **({"type": q.extra["type"]} if "type" in q.extra else {}),
            }
            for q in queries
        ]
        stages = [*retrievers.items(), *self._reranked(retrievers)]
        for number, (name, retriever) in enumerate(stages, 1):
            # Said in the log too: embedding thousands of passages on a CPU takes minutes, and its bar
            # (retrieval/encoder.py) shows only on a terminal.
            log.info(
                "%s: retriever %d of %d: %s, indexing %d passages",
                self.label("retrieval"),
                number,
                len(stages),
                name,
                len(passages),
            )
            start = time.perf_counter()
            retriever.index(passages)
            index_s = time.perf_counter() - start
            fusion_choice = None
            if name == "hybrid" and self.fusion and self.fusion.get("tune_on"):
                fusion_choice = self._choose_fusion(retriever, all_queries)
            rerank_choice = None
            if hasattr(retriever, "reranker") and self.reranker["weight"] is None:
                rerank_choice = self._choose_rerank_weight(name, retriever, all_queries)
            # One query untimed first (retrieval/timing.py): a reranker whose weight was chosen had its
            # set-up in its dev pass, one with a fixed weight not; its own timer restarts after it.
            reranker = getattr(retriever, "reranker", None)
            hits, ms_per_query = timed_search(
                retriever,
                [q.query for q in queries],
                max([*self.ks, self.mrr_k]),
                lambda r=reranker: r is not None and setattr(r, "seconds", 0.0),
            )
            for item, q, row in zip(self.items, queries, hits):
                ranked = [pid for pid, _ in row]
                item["prediction"][name] = ranked
                item["scores"].update(
                    {f"{name}.{m}": v for m, v in query_scores(ranked, q.positive_ids, self.ks, self.mrr_k).items()}
                )
            metrics = {**summarize(self.items, prefix=f"{name}."), "queries": len(queries)}
            if not getattr(retriever, "reuses_parts", False):  # a hybrid searches its parts' indexes
                metrics["passages_per_s"] = round(len(passages) / max(index_s, 1e-9), 1)
            metrics["ms_per_query"] = ms_per_query
            if hasattr(retriever, "reranker"):  # the part of ms_per_query the cross-encoder adds
                metrics["rerank_ms_per_query"] = round(1000 * retriever.reranker.seconds / len(queries), 2)
            by_type = self._by_type(name)
            if by_type:
                metrics["by_type"] = by_type
            if fusion_choice is not None:
                metrics["fusion"] = fusion_choice
            if rerank_choice is not None:
                metrics["rerank"] = rerank_choice
            results[name] = metrics
            log.info(
                "retrieval %s: hit@8 %.3f mrr@10 %.3f",
                name,
                metrics.get("hit@8", float("nan")),
                metrics.get(f"mrr@{self.mrr_k}", float("nan")),
            )
        results["passages"] = len(passages)
        if cleaning is not None:  # what the build left out or redacted: the figures are over what remained
            results["passages_cleaning"] = cleaning.to_json()
        results["gold_without_evidence"] = len(stale)  # questions whose evidence no gold passage holds
        results["split"] = self.split
        if self.misses_file:
            by_id = {p.id: p for p in passages}
            names = list(self.items[0]["prediction"]) if self.items else list(retrievers)
            write_misses(self.misses_file, self.items, names, by_id, self.misses_k)
        return results

    def _reranked(self, retrievers: dict) -> list[tuple[str, object]]:
        """(`<name>+rerank`, the first stage followed by the cross-encoder) for each stage in `apply_to`;
        they run after their first stages, whose indexes (and hybrid fusion choice) they reuse."""
        if not self.reranker:
            return []
        from chipadapt.retrieval.rerank import RerankedRetriever, Reranker

        r = self.reranker
        unknown = [name for name in r["apply_to"] if name not in retrievers]
        if unknown:
            raise ChipadaptError(f"eval.retrieval.reranker.apply_to: {unknown[0]!r} is not one of {list(retrievers)}")
        reranker = Reranker(r["path"], None, r["top_k"], r["batch_size"], r["max_tokens"])
        # Each first stage gets its own weight and timer; the cross-encoder itself is loaded once.
        return [
            (f"{name}+rerank", RerankedRetriever(retrievers[name], reranker.with_weight(r["weight"])))
            for name in r["apply_to"]
        ]

    def _by_type(self, name: str) -> dict:
        """The retriever's figures over each question type's items (with their intervals)."""
        types = sorted({item["type"] for item in self.items if "type" in item})
        return {
            kind: {
                **summarize([i for i in self.items if i.get("type") == kind], prefix=f"{name}."),
                "queries": sum(i.get("type") == kind for i in self.items),
            }
            for kind in types
        }
