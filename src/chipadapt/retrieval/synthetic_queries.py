"""Synthetic training queries, style by style: LLM-written questions with their fallbacks (inverse cloze, a
heading template), and template queries read from the passages' structure."""

import random

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passage_structure import document_structures
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.query_styles import (
    document_frequencies,
    error_query,
    flag_query,
    howto_from_heading,
    keyword_query,
)
from chipadapt.retrieval.sentences import sentences
from chipadapt.retrieval.synthetic_llm import HOWTO_PROMPT, QUESTION_PROMPT

STYLES = ("question", "howto", "keyword", "flag", "error")


def ict_query(passage: Passage, rng: random.Random, min_words: int = 6, max_words: int = 40) -> tuple[str, str] | None:
    """Inverse cloze: one prose sentence of the passage is the query (its wrapped lines joined);
    returns (query, passage without it). A "Title > Section" first line (`passages.context`) is no
    sentence of the passage."""
    text = passage.text
    skip = len(passage.context) + 1 if passage.context and text.startswith(passage.context + "\n") else 0
    prose = [
        s
        for s in sentences(text[skip:])
        if min_words <= len(s.text.split()) <= max_words and not s.text.startswith(("#", "|", "```", "-", "*"))
    ]
    if not prose:
        return None
    sentence = rng.choice(prose)
    rest = text.replace(text[skip + sentence.start : skip + sentence.end], " ").strip()
    return sentence.text, rest


def style_quotas(styles: dict[str, float], num_samples: int) -> dict[str, int]:
    """Samples per style: `num_samples` split by the styles' shares (a left-out style frees its share)."""
    unknown = sorted(set(styles) - set(STYLES))
    if unknown:
        raise ChipadaptError(f"synthetic.styles: {unknown[0]!r} is not one of {', '.join(STYLES)}")
    total = sum(float(v) for v in styles.values())
    if total <= 0 or any(float(v) < 0 for v in styles.values()):
        raise ChipadaptError(f"synthetic.styles: shares must be >= 0 and not all 0, got {dict(styles)}")
    return {name: round(num_samples * float(share) / total) for name, share in styles.items()}


def _style_queries(passages, eligible, quotas, method, llm, rng, report) -> list[tuple]:
    """(source passage, query, method, positive text, style, guard terms) per sample, style by style."""
    structures = document_structures(passages)
    queries = []
    for style, quota in quotas.items():
        made = 0
        if style in ("question", "howto"):
            sample = rng.sample(eligible, min(quota, len(eligible)))
            drawn = len(sample)
            if method == "llm":
                prompt, opening = (QUESTION_PROMPT, "") if style == "question" else (HOWTO_PROMPT, "how")
                written = llm.write_questions(sample, prompt, opening)
            else:
                written = [None] * len(sample)
            for passage, question in zip(sample, written):
                if question:
                    queries.append((passage, question, "llm", passage.text, style, ()))
                elif style == "question" and (ict := ict_query(passage, rng)):
                    # the passage minus the sentence, so the query is not a substring of its positive
                    queries.append((passage, ict[0], "ict", ict[1], style, ()))
                elif style == "howto" and (howto := howto_from_heading(structures[passage.id])):
                    queries.append((passage, howto, "template", passage.text, style, ()))
                else:
                    report["dropped"] += 1
                    continue
                made += 1
        elif style == "keyword":
            df, n_docs = document_frequencies([p.text for p in passages])
            drawn = min(quota, len(eligible))
            for passage in rng.sample(eligible, drawn):
                query = keyword_query(passage.text, structures[passage.id], df, n_docs, rng)
                if query:
                    queries.append((passage, query, "template", passage.text, style, ()))
                    made += 1
        else:  # flag, error: one table row or message each, from passages of any length
            if style == "flag":
                entries = [(p, e) for p in passages for e in structures[p.id].options + structures[p.id].variables]
            else:
                entries = [(p, m) for p in passages for m in structures[p.id].messages]
            drawn = min(quota, len(entries))
            for passage, entry in rng.sample(entries, drawn):
                if style == "flag":
                    query, guard = flag_query(entry, rng), (entry.name,) + ((entry.command,) if entry.command else ())
                else:
                    query, guard = error_query(entry, rng), (entry.code or entry.text[:40],)
                queries.append((passage, query, "template", passage.text, style, guard))
                made += 1
        # fewer drawn than requested: the corpus has fewer eligible passages (table rows, messages)
        report["styles"][style] = {"requested": quota, "sampled": drawn, "made": made}
        report["sampled"] += drawn
    return queries
