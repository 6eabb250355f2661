"""Evaluation queries: JSONL `{"id", "query", "positive_ids": [...], "answer"?}`."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.jsonl import jsonl_records, unique_field


@dataclass(frozen=True)
class Query:
    id: str
    query: str
    positive_ids: tuple[str, ...]
    answer: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        record = {"id": self.id, "query": self.query, "positive_ids": list(self.positive_ids)}
        if self.answer is not None:
            record["answer"] = self.answer
        return json.dumps({**record, **self.extra}, ensure_ascii=False)


def read_queries(path: str | Path, known_ids: set[str] | None = None) -> list[Query]:
    """Queries with at least one positive; with `known_ids`, every positive must be a passage id."""
    path = Path(path)
    queries = []
    for lineno, record in unique_field(jsonl_records(path, missing=f"queries file {path} does not exist"), path, "id"):
        if not isinstance(record.get("query"), str):
            raise ChipadaptError(f"{path}:{lineno}: a query needs a string 'query'")
        if not record["query"].strip():  # retrievers find nothing for it: it would count as a miss
            raise ChipadaptError(f"{path}:{lineno}: 'query' is empty")
        positives = record.get("positive_ids")
        if not isinstance(positives, list) or not positives:
            raise ChipadaptError(f"{path}:{lineno}: 'positive_ids' must be a non-empty list")
        if known_ids is not None:
            unknown = [p for p in positives if str(p) not in known_ids]
            if unknown:
                raise ChipadaptError(f"{path}:{lineno}: positive id {unknown[0]!r} is not in the passages file")
        extra = {k: v for k, v in record.items() if k not in ("id", "query", "positive_ids", "answer")}
        queries.append(
            Query(
                str(record.get("id", f"q{lineno}")),
                record["query"],
                tuple(map(str, positives)),
                record.get("answer"),
                extra,
            )
        )
    if not queries:
        raise ChipadaptError(f"{path}: no queries")
    return queries


def write_queries(queries: list[Query], path: Path) -> Path:
    return write_text_atomic(path, "".join(q.to_json() + "\n" for q in queries))


SPLITS = ("dev", "test", "all")


def select_split(queries: list[Query], split: str, source: str = "queries", key: str = "split") -> list[Query]:
    """The queries of one split (`split` field: dev for choosing settings, test for reporting), or all.
    A file that marks no split can only be used whole; one that marks some queries must mark all.
    `key`: the config key that chose `split`, named when the split is unknown or empty."""
    if split not in SPLITS:
        raise ChipadaptError(f"{key}={split!r} is not one of {', '.join(SPLITS)}")
    if split == "all":
        return queries
    unmarked = [q.id for q in queries if q.extra.get("split") not in ("dev", "test")]
    if len(unmarked) == len(queries):
        raise ChipadaptError(f"{source}: no query has a 'split' field (dev|test); use {key}=all")
    if unmarked:
        raise ChipadaptError(f"{source}: query {unmarked[0]!r} has no 'split' of dev or test")
    chosen = [q for q in queries if q.extra["split"] == split]
    if not chosen:
        raise ChipadaptError(f"{source}: no query has split {split!r} ({key}={split})")
    return chosen
