"""hit@k / MRR of BM25 and dense encoders on query sets, as a table: the retriever stage's check of
the encoder it trained against the one it started from. Each set's figures travel with what they were
measured on (its file, the split of `retriever.eval_queries`, the number of queries)."""

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig
from rich.table import Table

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import is_uncertainty_key, summarize
from chipadapt.report import no_interval, with_interval
from chipadapt.retrieval.build import make_retrievers
from chipadapt.retrieval.metrics import query_scores
from chipadapt.retrieval.queries import Query, read_queries, select_split
from chipadapt.retrieval.timing import timed_search
from chipadapt.retrieval.training_data import plain

log = logging.getLogger(__name__)

MRR_K = 10


@dataclass
class QuerySet:
    queries: list[Query]
    about: dict = field(default_factory=dict)  # {file, split}: recorded beside the figures


def eval_question_set(path: str, split: str) -> QuerySet:
    """`retriever.eval_queries`, its `retriever.eval_split` questions (as eval=retrieval's `split`: dev,
    test or all, the last for a file that marks none): read before any work, so that a malformed file
    stops the run in seconds rather than after training."""
    try:
        queries = select_split(read_queries(path), split, str(path), "retriever.eval_split")
    except ChipadaptError as err:
        raise ChipadaptError(f"retriever.eval_queries: {err}") from None
    return QuerySet(queries, {"file": str(path), "split": split})


def with_known_passages(
    questions: QuerySet, known_ids: set[str], passages_named: str, duplicates: dict[str, str] | None = None
) -> QuerySet | None:
    """`questions` when every gold id is a passage (one naming an exact duplicate the build dropped read as
    the passage kept, `duplicates`); otherwise an error, except for a question set shipped with chipadapt
    (the default, the OpenROAD questions): against other passages it is left out with a warning, a run on
    other documents being no mistake."""
    path = questions.about["file"]
    try:
        resolved = read_queries(path, known_ids, duplicates, passages_named)
    except ChipadaptError as err:
        if shipped(path):
            log.warning("retriever.eval_queries not evaluated (its questions are for other passages): %s", err)
            return None
        raise ChipadaptError(f"retriever.eval_queries: {err}") from None
    by_id = {q.id: q for q in resolved}
    return QuerySet([by_id[q.id] for q in questions.queries], questions.about)


def shipped(path: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(str(resources.files("chipadapt") / "resources")).resolve())


@dataclass
class Comparison:
    results: dict  # {query_set: {file, split?, queries, retriever: metrics}}
    # One per query of every set, as eval/items.py has them (task `retrieval`, results.json's top key):
    # the figures are their means, so the search's objective can be recomputed and paired from the folder.
    items: list[dict]


def compare_encoders(rcfg: DictConfig, passages, query_sets: dict[str, QuerySet], encoders: dict) -> Comparison:
    """BM25 and each encoder (name -> {path, package}) on each query set: figures and per-query items."""
    dense = {k: v for k, v in plain(rcfg.encoder).items() if k not in ("path", "package")}
    retrievers = make_retrievers(encoders, {**dense, "batch_size": rcfg.eval_batch_size}, plain(rcfg.bm25), None)
    ks, mrr_k = list(rcfg.eval_ks), MRR_K
    results = {name: {**qs.about, "queries": len(qs.queries)} for name, qs in query_sets.items()}
    items = {qname: [query_item(qname, q) for q in qs.queries] for qname, qs in query_sets.items()}
    for rname, retriever in retrievers.items():
        retriever.index(passages)
        for qname, qs in query_sets.items():
            # timed as evaluate.py times it, so the two commands' figures compare
            hits, ms_per_query = timed_search(retriever, [q.query for q in qs.queries], max([*ks, mrr_k]))
            for item, q, row in zip(items[qname], qs.queries, hits):
                score_item(item, qname, rname, [pid for pid, _ in row], q.positive_ids, ks, mrr_k)
            results[qname][rname] = {
                **summarize(items[qname], prefix=f"{qname}.{rname}."),
                "queries": len(qs.queries),
                "ms_per_query": ms_per_query,
            }
    return Comparison(results, [item for rows in items.values() for item in rows])


def query_item(qname: str, query: Query) -> dict:
    """A query's record before any retriever ran. Its id names its set too: the held-out synthetic
    queries and `retriever.eval_queries` are two files, whose ids may meet."""
    return {
        "id": f"{qname}:{query.id}",
        "query_set": qname,
        "query": query.query,
        "reference": list(query.positive_ids),
        "prediction": {},
        "rank": {},
        "scores": {},
    }


def score_item(item: dict, qname: str, rname: str, ranked: list[str], gold, ks: list[int], mrr_k: int) -> None:
    """`rname`'s ranked ids for the query, the rank of its first gold passage among them (null: none
    there) and its scores (`<set>.<retriever>.hit@k`, `... .mrr@10`: the reciprocal rank within 10),
    named as results.json names their means under `retrieval`."""
    ranked = list(dict.fromkeys(ranked))
    item["prediction"][rname] = ranked
    item["rank"][rname] = next((rank for rank, pid in enumerate(ranked, start=1) if pid in set(gold)), None)
    scores = query_scores(ranked, tuple(gold), ks, mrr_k)
    item["scores"].update({f"{qname}.{rname}.{name}": value for name, value in scores.items()})


def comparison_tables(results: dict) -> list[Table]:
    """A table per query set: each figure with its 95% interval over the set's n queries."""
    tables = []
    for qname, measured in results.items():
        split = f"{measured['split']} split, " if measured.get("split") else ""
        table = Table(
            title=f"retrieval on {qname} ({split}{measured['queries']} queries; [95% interval] over n queries)"
        )
        by_retriever = {rname: m for rname, m in measured.items() if isinstance(m, dict)}
        first = next(iter(by_retriever.values()), {})
        columns = [c for c in first if c.startswith(("hit@", f"mrr@{MRR_K}")) and not is_uncertainty_key(c)]
        for column in ("retriever", "n", *columns):
            table.add_column(column, justify="left" if column == "retriever" else "right")
        for rname, m in by_retriever.items():
            table.add_row(rname, str(m["queries"]), *(figure_text(m, c) for c in columns))
        tables.append(table)
    return tables


def figure_text(measured: dict, name: str) -> str:
    """A figure with its interval, or why it has none: a bootstrap over one query gives no interval
    (eval/items.py), and a bare `0.500` read as if it were exact."""
    if measured.get(f"{name}_ci"):
        return with_interval(measured, name, 3)
    return f"{measured[name]:.3f} {no_interval(measured.get(f'{name}_n', measured.get('queries')))}"
