"""Documents -> passages of about `max_chars` characters, split on structure before characters.

A document is first cut into blocks (fenced code blocks, headings, blank-line paragraphs); blocks
are packed greedily into passages, and only a block longer than a passage is cut further, on line
breaks, then on sentence ends, then on spaces. A heading never ends a passage: it moves to the next
one, so every passage carries the heading of the section it comes from.

Each passage also knows its context: the document title (its first `# ` heading, else its path) and
the headings of the sections that enclose its start. `Passage.with_context()` prepends them to the
text, so that BM25 and dense encoders both see where a passage comes from (`passages.context`).
"""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chipadapt.data.source_spec import source_spec
from chipadapt.data.sources import iter_source
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.jsonl import jsonl_records
from chipadapt.retrieval.passage_cleaning import (
    CleaningReport,
    drop_duplicates,
    machine_like_reason,
    note_dominant,
    redacted,
)

FENCE = re.compile(r"^(```|~~~)")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    source: str
    context: str = ""  # "Title > Section > Subsection" of the passage's start; "" when unknown

    def to_json(self) -> str:
        record = {"id": self.id, "text": self.text, "source": self.source}
        if self.context:
            record["context"] = self.context
        return json.dumps(record, ensure_ascii=False)

    def with_context(self) -> "Passage":
        """The passage with its context as a first line (`passages.context`: the text every retriever
        indexes and the RAG prompt shows)."""
        if not self.context or self.text.startswith(self.context):
            return self
        return Passage(self.id, f"{self.context}\n{self.text}", self.source, self.context)

    def indexed_text(self, context: bool) -> str:
        """The text a retriever indexes: with its context first line when `context` (`bm25.context`,
        `dense.context`), whether or not the passage text itself carries it (`passages.context`)."""
        return self.with_context().text if context else self.text


def structural_blocks(text: str) -> list[str]:
    """Code fences stay whole; everything else splits on blank lines (a heading is its own block)."""
    blocks, current, in_fence = [], [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            if not in_fence and current:
                blocks.append("\n".join(current))
                current = []
            current.append(line)
            if in_fence:
                blocks.append("\n".join(current))
                current = []
            in_fence = not in_fence
            continue
        if in_fence:
            current.append(line)
        elif not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
        elif line.lstrip().startswith("#"):
            if current:
                blocks.append("\n".join(current))
            blocks.append(line)
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return [b.strip("\n") for b in blocks if b.strip()]


def _split_long(block: str, max_chars: int) -> list[str]:
    """Cut one oversized block on the coarsest boundary that makes pieces fit."""
    if len(block) <= max_chars:
        return [block]
    for pattern in (r"(?<=\n)", r"(?<=[.!?;])\s+", r"\s+"):
        parts = [p for p in re.split(pattern, block) if p.strip()]
        if len(parts) > 1:
            return _pack(parts, max_chars, joiner="" if pattern == r"(?<=\n)" else " ")
    return [block[i : i + max_chars] for i in range(0, len(block), max_chars)]


def _pack(parts: list[str], max_chars: int, joiner: str) -> list[str]:
    out, current = [], ""
    for part in parts:
        for piece in _split_long(part, max_chars):
            candidate = f"{current}{joiner}{piece}" if current else piece
            if len(candidate) <= max_chars or not current:
                current = candidate
            else:
                out.append(current)
                current = piece
    if current:
        out.append(current)
    return [p.strip() for p in out if p.strip()]


def chunk_text(text: str, max_chars: int, min_chars: int, overlap_chars: int) -> list[str]:
    """The passages of one document, in order."""
    return [chunk for chunk, _ in chunk_sections(text, max_chars, min_chars, overlap_chars)]


def _heading(piece: str) -> tuple[int, str]:
    """(level, title) of a markdown heading line."""
    stripped = piece.strip()
    return len(stripped) - len(stripped.lstrip("#")), stripped.lstrip("#").strip()


def _under(path: tuple[tuple[int, str], ...], heading: str) -> tuple[tuple[int, str], ...]:
    """The heading path once `heading` opens its section: it replaces its level and those below."""
    level, title = _heading(heading)
    return (*(h for h in path if h[0] < level), (level, title))


def _opening_section(body: list[tuple[str, bool, tuple]]) -> tuple[tuple[int, str], ...]:
    """The section a passage's first prose belongs to: the path before its first piece that is not a
    heading. A passage that opens with `### set_derate` is about set_derate, not about the section
    before that heading (the path before its first piece), which would label it with a neighbour's name."""
    for _, is_heading, before in body:
        if not is_heading:
            return before
    return _under(body[-1][2], body[-1][0])  # headings only (a document's last lines)


def chunk_sections(
    text: str, max_chars: int, min_chars: int, overlap_chars: int
) -> list[tuple[str, tuple[tuple[int, str], ...]]]:
    """The passages of one document with, for each, the (level, heading) path of the section it opens
    in (`_opening_section`)."""
    if max_chars < 32:
        raise ChipadaptError(f"passages.max_chars={max_chars} is too small (at least 32)")
    pieces: list[tuple[str, bool]] = []  # (text, is_heading)
    for block in structural_blocks(text):
        is_heading = block.lstrip().startswith("#") and "\n" not in block
        pieces += [(p, is_heading) for p in _split_long(block, max_chars)]
    chunks: list[tuple[str, tuple]] = []
    body: list[tuple[str, bool, tuple]] = []  # (piece, is_heading, heading path before the piece)
    path: tuple[tuple[int, str], ...] = ()
    for piece, is_heading in pieces:
        if body and len("\n\n".join(t for t, *_ in body)) + 2 + len(piece) > max_chars:
            trailing = 0
            while trailing < len(body) and body[len(body) - 1 - trailing][1]:
                trailing += 1
            if trailing < len(body):  # headings at the end move on with the section they title
                kept = body[: len(body) - trailing]
                chunks.append(("\n\n".join(t for t, *_ in kept), _opening_section(kept)))
                body = body[len(body) - trailing :]
        body.append((piece, is_heading, path))
        if is_heading:
            path = _under(path, piece)
    if body:
        chunks.append(("\n\n".join(t for t, *_ in body), _opening_section(body)))
    # A short tail (a closing line, a lone link) joins the passage before it.
    merged: list[tuple[str, tuple]] = []
    for chunk, where in chunks:
        if merged and len(chunk) < min_chars and len(merged[-1][0]) + len(chunk) + 2 <= max_chars + min_chars:
            merged[-1] = (f"{merged[-1][0]}\n\n{chunk}", merged[-1][1])
        else:
            merged.append((chunk, where))
    if overlap_chars > 0:
        merged = [merged[0]] + [
            (_tail(prev, overlap_chars) + cur, where) for (prev, _), (cur, where) in zip(merged, merged[1:])
        ]
    return merged


def document_title(doc_id: str, text: str) -> str:
    """A document's first level-1 heading, else its id (a path)."""
    headings = (b for b in structural_blocks(text) if b.lstrip().startswith("#") and "\n" not in b)
    return next((title for level, title in map(_heading, headings) if level == 1 and title), doc_id)


def passage_context(title: str, path: tuple[tuple[int, str], ...]) -> str:
    """ "Title > Section > ...": the title, then the enclosing headings below level 1."""
    return " > ".join([title, *(h for level, h in path if level > 1 and h)])


def _tail(text: str, n: int) -> str:
    tail = text[-n:]
    cut = tail.find(" ")
    return (tail[cut + 1 :] if 0 <= cut < len(tail) - 1 else tail) + "\n"


def build_passages(
    sources: dict, max_chars: int, min_chars: int, overlap_chars: int, clean: dict | None = None
) -> list[Passage]:
    """Every source's documents, chunked; ids are `<source>:<doc id>#<n>` (stable for fixed settings).
    `clean`: the build's `redact`, `drop_duplicates`, `keep_machine_like` and `undecodable_share`
    (passage_cleaning.py); None cuts the documents as they are."""
    return build_passages_report(sources, max_chars, min_chars, overlap_chars, clean)[0]


def build_passages_report(
    sources: dict, max_chars: int, min_chars: int, overlap_chars: int, clean: dict | None = None
) -> tuple[list[Passage], CleaningReport]:
    """`build_passages`, and what its cleaning did."""
    report = CleaningReport()
    passages = []
    for name, spec in sources.items():
        key = f"passages.sources.{name}"
        count, skipped_before = 0, len(report.machine_like)
        share = clean["undecodable_share"] if clean else 0.0
        for doc in iter_source(source_spec(dict(spec), key), key, undecodable_share=share):
            if clean and not clean["keep_machine_like"] and (why := machine_like_reason(doc.doc_id, doc.text)):
                report.machine_like[f"{name}:{doc.doc_id}"] = why
                continue
            for n, (chunk, context) in enumerate(
                _document_passages(
                    doc.doc_id, doc.text, max_chars, min_chars, overlap_chars, bool(clean and clean["redact"]), report
                )
            ):
                passages.append(Passage(f"{name}:{doc.doc_id}#{n}", chunk, f"{name}:{doc.doc_id}", context))
                count += 1
        if count == 0:
            machine = len(report.machine_like) - skipped_before
            why = f"; {machine:,} machine-like files skipped (passages.keep_machine_like)" if machine else ""
            raise ChipadaptError(f"{key}: no passages (path {spec.get('path')}, filter {spec.get('where')}{why})")
    if clean and clean["drop_duplicates"]:
        passages = drop_duplicates(passages, report)
    note_dominant(passages, report)
    return passages, report


def _document_passages(
    doc_id: str, text: str, max_chars: int, min_chars: int, overlap_chars: int, redact: bool, report: CleaningReport
) -> list[tuple[str, str]]:
    """(text, context) of one document's passages, redacted when `redact`. Each passage is redacted after
    cutting, so a passage keeps the number (id) it has unredacted and gold ids stay valid; only where a
    secret straddles a boundary (a private key block across passages: a passage line the redacted whole
    document no longer holds) is the redacted document cut instead, so that no part of a key is left."""
    sections = chunk_sections(text, max_chars, min_chars, overlap_chars)
    title = document_title(doc_id, text)
    plain = [(chunk, passage_context(title, path)) for chunk, path in sections]
    if not redact:
        return plain
    found = CleaningReport()
    out = [(redacted(chunk, found), redacted(context, CleaningReport())) for chunk, context in plain]
    whole = CleaningReport()
    clean_text = redacted(text, whole)
    if whole.redactions and _straddled(out, clean_text):
        report.recut_documents.append(doc_id)
        title = document_title(doc_id, clean_text)
        found = whole  # what passage-wise redaction adds (a value a passage shows without its code) on top
        cut = chunk_sections(clean_text, max_chars, min_chars, overlap_chars)
        plain = [(chunk, passage_context(title, path)) for chunk, path in cut]
        out = [(redacted(chunk, found), redacted(context, CleaningReport())) for chunk, context in plain]
        plain = [(chunk, "") for chunk, _ in cut]
    report.redactions.update(found.redactions)
    report.redacted_passages += sum(
        new != old or "<secret>" in new or "<email>" in new for (new, _), (old, _) in zip(out, plain)
    )
    return out


def _straddled(passages: list[tuple[str, str]], clean_text: str) -> bool:
    """Whether a redacted passage holds a line the redacted whole document does not: part of a value that
    only the whole document shows to be a secret."""
    # Whitespace aside: the chunker cuts long lines on spaces and may glue cut pieces of lines together.
    whole = "".join(clean_text.split())
    return any("".join(line.split()) not in whole for chunk, _ in passages for line in chunk.splitlines())


def write_passages(passages: Iterable[Passage], path: Path) -> Path:
    return write_text_atomic(path, "".join(p.to_json() + "\n" for p in passages))


def read_passages(path: str | Path) -> list[Passage]:
    """A passages JSONL ({"id", "text", "source"?}); ids are used as given and must be unique."""
    path = Path(path)
    passages, seen = [], set()
    for lineno, record in jsonl_records(path, missing=f"passages file {path} does not exist"):
        if not isinstance(record.get("text"), str) or "id" not in record:
            raise ChipadaptError(f"{path}:{lineno}: a passage needs string 'text' and an 'id'")
        pid = str(record["id"])
        if pid in seen:
            raise ChipadaptError(f"{path}:{lineno}: duplicate passage id {pid!r}")
        seen.add(pid)
        passages.append(
            Passage(
                id=pid, text=record["text"], source=str(record.get("source", "")), context=record.get("context") or ""
            )
        )
    if not passages:
        raise ChipadaptError(f"{path}: no passages")
    return passages
