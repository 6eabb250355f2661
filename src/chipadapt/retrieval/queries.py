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


def read_queries(
    path: str | Path,
    known_ids: set[str] | None = None,
    duplicates: dict[str, str] | None = None,
    passages_named: str = "in the passages file",
) -> list[Query]:
    """Queries with at least one positive; with `known_ids`, every positive must be a passage id.
    `duplicates`: passage ids a build dropped as exact copies -> the id kept (passage_cleaning.py); a gold
    id naming a dropped copy is read as the kept one, said once per id. `passages_named`: where an unknown
    id is not, in the error ("among the 12 passages built from DOCS")."""
    path = Path(path)
    queries = []
    said: set[str] = set()
    for lineno, record in unique_field(jsonl_records(path, missing=f"queries file {path} does not exist"), path, "id"):
        if not isinstance(record.get("query"), str):
            raise ChipadaptError(f"{path}:{lineno}: a query needs a string 'query'")
        if not record["query"].strip():  # retrievers find nothing for it: it would count as a miss
            raise ChipadaptError(f"{path}:{lineno}: 'query' is empty")
        positives = record.get("positive_ids")
        if not isinstance(positives, list) or not positives:
            raise ChipadaptError(f"{path}:{lineno}: 'positive_ids' must be a non-empty list")
        positives = kept_ids([str(p) for p in positives], duplicates or {}, f"{path}:{lineno}", said)
        if known_ids is not None:
            unknown = [p for p in positives if p not in known_ids]
            if unknown:
                raise ChipadaptError(f"{path}:{lineno}: positive id {unknown[0]!r} is not {passages_named}")
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


def kept_ids(ids: list[str], duplicates: dict[str, str], where: str, said: set[str]) -> list[str]:
    """`ids` with each exact duplicate the build dropped replaced by the passage kept for it (the same text,
    so the same answer), in order and without repeats; warned once per dropped id (`said`)."""
    resolved = []
    for pid in ids:
        kept = duplicates.get(pid)
        if kept is not None and pid not in said:
            said.add(pid)
            log.warning(
                "%s: gold id %r names a passage dropped as an exact duplicate of %r (passages.drop_duplicates): "
                "scored as %r",
                where,
                pid,
                kept,
                kept,
            )
        kept = kept or pid
        if kept not in resolved:
            resolved.append(kept)
    return resolved


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
    passage that no longer answers it, silently. Evidence quoting a credential or an e-mail address is
    looked for as the passage build redacts it (passages.redact) too."""
    from chipadapt.curation.redaction import redact

    texts = {p.id: _flat(p.text) for p in passages}
    stale = []
    for q in queries:
        evidence = q.extra.get("evidence")
        if not isinstance(evidence, str) or not evidence.strip():
            continue
        forms = {_flat(evidence), _flat(redact(evidence)[0])}
        if any(form in texts.get(pid, "") for pid in q.positive_ids for form in forms):
            continue
        stale.append(q.id)
        holders = [pid for pid, text in texts.items() if any(form in text for form in forms)]
        now = f"passages holding it now: {', '.join(holders[:5])}" if holders else "no passage holds it now"
        why = "a document edited since the gold ids were written moves them"
        if len(forms) > 1:  # not the redaction: the evidence was looked for as passages.redact writes it too
            why = f"looked for redacted too (<secret>, <email>: passages.redact); {why}"
        log.warning(
            "%s:%s: question %r: its evidence %r is in none of its gold passages (%s); %s (%s)",
            source,
            q.line,
            q.id,
            redact(evidence)[0][:60],  # never a secret in the log
            ", ".join(q.positive_ids),
            now,
            why,
        )
    return stale
