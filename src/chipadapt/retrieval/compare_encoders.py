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
from chipadapt.eval.items import is_uncertainty_key
from chipadapt.report import with_interval
from chipadapt.retrieval.build import make_retrievers
from chipadapt.retrieval.metrics import retrieval_metrics
from chipadapt.retrieval.queries import Query, read_queries, select_split
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


def with_known_passages(questions: QuerySet, known_ids: set[str], passages_named: str) -> QuerySet | None:
    """`questions` when every gold id is a passage; otherwise an error, except for a question set shipped
    with chipadapt (the default, the OpenROAD questions): against other passages it is left out with a
    warning, a run on other documents being no mistake."""
    path = questions.about["file"]
    try:
        read_queries(path, known_ids=known_ids)
    except ChipadaptError as err:
        if shipped(path):
            log.warning("retriever.eval_queries not evaluated (its questions are for other passages): %s", err)
            return None
        raise ChipadaptError(f"retriever.eval_queries: {err} ({passages_named})") from None
    return questions


def shipped(path: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(str(resources.files("chipadapt") / "resources")).resolve())


def compare_encoders(rcfg: DictConfig, passages, query_sets: dict[str, QuerySet], encoders: dict) -> dict:
    """{query_set: {file, split?, queries, retriever: metrics}} for BM25 and each encoder (name -> {path, package})."""
    dense = {k: v for k, v in plain(rcfg.encoder).items() if k not in ("path", "package")}
    retrievers = make_retrievers(encoders, {**dense, "batch_size": rcfg.eval_batch_size}, plain(rcfg.bm25), None)
    ks, mrr_k = list(rcfg.eval_ks), MRR_K
    results = {name: {**qs.about, "queries": len(qs.queries)} for name, qs in query_sets.items()}
    for rname, retriever in retrievers.items():
        retriever.index(passages)
        for qname, qs in query_sets.items():
            hits = retriever.search([q.query for q in qs.queries], max([*ks, mrr_k]))
            results[qname][rname] = retrieval_metrics(
                [[pid for pid, _ in row] for row in hits], [q.positive_ids for q in qs.queries], ks, mrr_k
            )
    return results


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
            table.add_row(rname, str(m["queries"]), *(with_interval(m, c, 3) for c in columns))
        tables.append(table)
    return tables
