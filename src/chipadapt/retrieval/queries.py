"""Evaluation queries: JSONL `{"id", "query", "positive_ids": [...], "answer"?, "evidence"?}`."""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.jsonl import jsonl_records, unique_field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    id: str
    query: str
    positive_ids: tuple[str, ...]
    answer: str | None = None
    extra: dict = field(default_factory=dict, compare=False)
    line: int | None = field(default=None, compare=False)  # of its file, for messages; never written

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
                lineno,
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
    unmarked = [q for q in queries if q.extra.get("split") not in ("dev", "test")]
    if len(unmarked) == len(queries):
        raise ChipadaptError(f"{source}: no query has a 'split' field (dev|test); use {key}=all")
    if unmarked:
        bad = unmarked[0]
        where = f"{source}:{bad.line}" if bad.line else source
        marked = bad.extra.get("split")
        found = f"split {marked!r}, not dev or test" if marked is not None else "no 'split' of dev or test"
        raise ChipadaptError(f"{where}: query {bad.id!r} has {found}")
    chosen = [q for q in queries if q.extra["split"] == split]
    if not chosen:
        raise ChipadaptError(f"{source}: no query has split {split!r} ({key}={split})")
    return chosen


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def gold_without_evidence(queries: list[Query], passages, source: str) -> list[str]:
    """The ids of the questions whose `evidence` string (spacing and case aside) is in none of their gold
    passages, each warned about with its line and the passages that hold the evidence now. Gold ids are
    `<file>#<n>` by position: an edited document moves them, and the question is then scored against a
    passage that no longer answers it, silently."""
    texts = {p.id: _flat(p.text) for p in passages}
    stale = []
    for q in queries:
        evidence = q.extra.get("evidence")
        if not isinstance(evidence, str) or not evidence.strip():
            continue
        wanted = _flat(evidence)
        if any(wanted in texts.get(pid, "") for pid in q.positive_ids):
            continue
        stale.append(q.id)
        holders = [pid for pid, text in texts.items() if wanted in text]
        now = f"passages holding it now: {', '.join(holders[:5])}" if holders else "no passage holds it now"
        log.warning(
            "%s:%s: question %r: its evidence %r is in none of its gold passages (%s); %s (a document edited "
            "since the gold ids were written moves them)",
            source,
            q.line,
            q.id,
            evidence[:60],
            ", ".join(q.positive_ids),
            now,
        )
    return stale
