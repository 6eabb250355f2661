"""hit@k / MRR of BM25 and dense encoders on query sets, as a table: the retriever stage's check of
the encoder it trained against the one it started from."""

from omegaconf import DictConfig
from rich.table import Table

from chipadapt.retrieval.build import make_retrievers
from chipadapt.retrieval.metrics import retrieval_metrics
from chipadapt.retrieval.training_data import plain

COLUMNS = ("hit@1", "hit@5", "hit@8", "hit@20", "mrr@10")


def compare_encoders(rcfg: DictConfig, passages, query_sets: dict, encoders: dict) -> dict:
    """{query_set: {retriever: metrics}} for BM25 and each encoder (name -> {path, package})."""
    dense = {k: v for k, v in plain(rcfg.encoder).items() if k not in ("path", "package")}
    retrievers = make_retrievers(encoders, {**dense, "batch_size": rcfg.eval_batch_size}, plain(rcfg.bm25), None)
    ks, mrr_k = list(rcfg.eval_ks), 10
    results = {name: {} for name in query_sets}
    for rname, retriever in retrievers.items():
        retriever.index(passages)
        for qname, queries in query_sets.items():
            hits = retriever.search([q.query for q in queries], max([*ks, mrr_k]))
            results[qname][rname] = retrieval_metrics(
                [[pid for pid, _ in row] for row in hits], [q.positive_ids for q in queries], ks, mrr_k
            )
    return results


def comparison_tables(results: dict, query_sets: dict) -> list[Table]:
    tables = []
    for qname, by_retriever in results.items():
        table = Table(title=f"retrieval on {qname} ({len(query_sets[qname])} queries)")
        for column in ("retriever", *COLUMNS):
            table.add_column(column)
        for rname, m in by_retriever.items():
            table.add_row(rname, *(f"{m[c]:.3f}" for c in COLUMNS if c in m))
        tables.append(table)
    return tables
