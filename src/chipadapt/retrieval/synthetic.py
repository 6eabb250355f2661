"""Synthetic retriever training data, after ChipNeMo's appendix A.8, in the styles engineers ask in.

Passages are sampled per query style (shares of `num_samples`): a natural question and a "How do
I ..." question written by an LLM (or, without one, the inverse-cloze fallback: one of the passage's
own sentences, and a heading template), and template styles read from the passage's structure
(keyword queries, option/flow-variable lookups, error messages; see query_styles.py). BM25 mines the
top candidates for each query, an LLM judge marks the candidates that also answer an LLM-written
query (extra positives), the rest are hard negatives, and random passages fill the negatives up.
Near-duplicates of a positive, and candidates naming the same flag or message code as a lookup
query, are never negatives: they would teach the encoder that the answer is wrong.
"""

import logging
import random
import re
from dataclasses import dataclass, field

import torch
from rich.progress import track

from chipadapt.errors import ChipadaptError
from chipadapt.models.text_generation import generate
from chipadapt.report import while_running
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

log = logging.getLogger(__name__)

QUESTION_PROMPT = (
    "Here is a passage from chip design tool documentation.\n\n{passage}\n\n"
    "Write one short question that an engineer might ask and that this passage answers. "
    "Reply with the question only."
)
HOWTO_PROMPT = (
    "Here is a passage from chip design tool documentation.\n\n{passage}\n\n"
    "Write one short question that starts with 'How do I' and that this passage answers. "
    "Reply with the question only."
)
STYLES = ("question", "howto", "keyword", "flag", "error")
JUDGE_PROMPT = "Passage:\n{passage}\n\nQuestion: {question}\n\nDoes the passage answer the question? Reply Yes or No."


@dataclass
class TrainingGroup:
    query_id: str
    query: str
    method: str  # llm | ict | template
    positives: list[Passage]
    negatives: list[Passage]
    extra: dict = field(default_factory=dict)

    def to_tevatron(self) -> dict:
        as_docs = lambda ps: [{"docid": p.id, "text": p.text} for p in ps]  # noqa: E731
        return {
            "query_id": self.query_id,
            "query": self.query,
            "positive_passages": as_docs(self.positives),
            "negative_passages": as_docs(self.negatives),
            "method": self.method,
            **self.extra,
        }


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


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


def clean_question(text: str, starts_with: str = "") -> str | None:
    """First line of a generated reply, if it is a plausible question (opening with `starts_with`)."""
    line = next((row.strip() for row in text.splitlines() if row.strip()), "")
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.I).strip(" \"'")
    if "?" in line:
        line = line[: line.index("?") + 1]
    words = len(line.split())
    if starts_with and not line.lower().startswith(starts_with):
        return None
    return line if line.endswith("?") and 4 <= words <= 40 else None


class LLMHelper:
    """The causal LM that writes questions and judges passages (any model folder of this project)."""

    def __init__(self, model, tokenizer, batch_size: int, max_new_tokens: int, passage_chars: int):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens, self.passage_chars = batch_size, max_new_tokens, passage_chars

    def write_questions(
        self, passages: list[Passage], prompt: str = QUESTION_PROMPT, starts_with: str = ""
    ) -> list[str | None]:
        prompts = [prompt.format(passage=p.text[: self.passage_chars]) for p in passages]
        out = []
        for start in track(range(0, len(prompts), self.batch_size), description="writing questions", **while_running()):
            out += generate(
                self.model,
                self.tokenizer,
                prompts[start : start + self.batch_size],
                self.batch_size,
                self.max_new_tokens,
                chat=True,
            )
        return [clean_question(text, starts_with) for text in out]

    def yes_scores(self, pairs: list[tuple[str, Passage]]) -> list[float]:
        """log P(Yes) - log P(No) as the reply to the judge prompt, one forward pass per batch."""
        tok = self.tokenizer
        yes_id = tok("Yes", add_special_tokens=False).input_ids[0]
        no_id = tok("No", add_special_tokens=False).input_ids[0]
        prompts = []
        for question, passage in pairs:
            prompt = JUDGE_PROMPT.format(passage=passage.text[: self.passage_chars], question=question)
            if tok.chat_template:
                prompt = tok.apply_chat_template(
                    [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
                )
            prompts.append(prompt)
        tok.padding_side = "left"  # the last position is then every row's next token
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        scores = []
        for start in track(
            range(0, len(prompts), self.batch_size), description="judging candidates", **while_running()
        ):
            enc = tok(
                prompts[start : start + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.model.device)
            last = self.model(**enc).logits[:, -1].float().log_softmax(-1)
            scores += (last[:, yes_id] - last[:, no_id]).tolist()
        return scores


def pick_negatives(
    mined: list[Passage],
    passages: list[Passage],
    positives: list[Passage],
    positive_shingles: list[set],
    num_negatives: int,
    near_duplicate_jaccard: float,
    rng: random.Random,
    report: dict,
    guard: tuple[str, ...] = (),
) -> tuple[list[Passage], int]:
    """Negatives for one query (mined ones first, random passages fill up) and how many of them were mined.
    A candidate holding every `guard` term (a lookup query's flag and command, or message code) answers
    the lookup too and is never a negative."""
    negatives, seen = [], {p.id for p in positives}

    def admit(cand: Passage) -> None:
        if cand.id in seen or len(negatives) >= num_negatives:
            return
        seen.add(cand.id)
        if any(jaccard(shingles(cand.text), s) >= near_duplicate_jaccard for s in positive_shingles):
            report["near_duplicates_skipped"] += 1
            return
        if guard and all(term in cand.text for term in guard):
            report["same_entry_skipped"] += 1
            return
        negatives.append(cand)

    for cand in mined:
        admit(cand)
    hard = len(negatives)
    while len(negatives) < num_negatives and len(seen) < len(passages):
        admit(rng.choice(passages))
    return negatives, hard


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


def warn_if_fallbacks_carry(report: dict) -> None:
    """One warning when the LLM wrote a usable question for fewer than half of the passages it was
    given: the data is then mostly the fallbacks' (ICT sentences, heading templates), which the report's
    counts show but nothing else says. (SmolLM2-135M-Instruct, the default, wrote 334 of 600: LOG.md.)"""
    asked = sum(report["styles"].get(style, {}).get("sampled", 0) for style in ("question", "howto"))
    if asked and report["llm"] < asked / 2:
        log.warning(
            "synthetic.method=llm: the model wrote a usable question for only %d of %d passages; %d fell back to "
            "ICT (a sentence of the passage) or a heading template, %d were dropped; an instruct model "
            "(model.path=...) writes questions, retriever.synthetic.method=ict asks for ICT",
            report["llm"],
            asked,
            asked - report["llm"] - report["dropped"],
            report["dropped"],
        )


def warn_if_few_made(report: dict, made: int, min_passage_chars: int) -> None:
    """One warning, whatever the method, when fewer than half of the requested samples became training
    queries: 40 requested, 1 made, trained and saved as a fine-tuned encoder, said nowhere but in the
    report's counts."""
    requested = report["requested"]
    if requested and made < requested / 2:
        log.warning(
            "retriever.synthetic: only %d training queries made of %d requested (%d passages drawn, %d dropped "
            "with no usable query; %d of the %d passages are at least min_passage_chars=%d long): the encoder "
            "learns from almost nothing; build more or longer passages, or add query styles "
            "(retriever.synthetic.styles: keyword, flag, error)",
            made,
            requested,
            report["sampled"],
            report["dropped"],
            report["eligible"],
            report["passages"],
            min_passage_chars,
        )


@torch.no_grad()
def no_queries_message(report: dict, method: str, min_passage_chars: int) -> str:
    """Why no training query was made, and the settings that change it."""
    made = f"retriever.synthetic: no synthetic query was made from the {report['passages']} passages"
    if not report["eligible"]:
        return (
            f"{made}: none is at least retriever.synthetic.min_passage_chars={min_passage_chars} characters "
            "long; lower it, or build longer passages (passages.max_chars)"
        )
    how = (
        "an ICT query is a prose sentence of 6 to 40 words of its passage"
        if method == "ict"
        else "the LLM wrote no usable question for any, and the ICT fallback found no prose sentence of 6 to 40 words"
    )
    return (
        f"{made}: {report['sampled']} of the {report['eligible']} long enough were drawn and all {report['dropped']} "
        f"were dropped ({how}); build longer passages (passages.max_chars), or add query styles that read "
        "the passages' structure (retriever.synthetic.styles: keyword, flag, error)"
    )


def synthesize(
    passages: list[Passage],
    num_samples: int,
    method: str,
    miner,
    llm: LLMHelper | None,
    mine_depth: int,
    judge_depth: int,
    judge_margin: float,
    num_negatives: int,
    near_duplicate_jaccard: float,
    min_passage_chars: int,
    seed: int,
    styles: dict[str, float] | None = None,
) -> tuple[list[TrainingGroup], dict]:
    """Training groups and a report of how they were made (style and method counts, judge decisions, guards).

    `styles`: style -> share of `num_samples`; None = natural questions only (the data before styles)."""
    if method not in ("llm", "ict"):
        raise ValueError(f"synthetic.method: {method!r} is not one of llm, ict")
    rng = random.Random(seed)
    eligible = [p for p in passages if len(p.text) >= min_passage_chars]
    quotas = style_quotas(styles or {"question": 1.0}, num_samples)
    report = {
        "passages": len(passages),
        "eligible": len(eligible),
        "requested": sum(quotas.values()),
        "sampled": 0,  # drawn for generation, at most the eligible passages (entries) of each style
        "method_requested": method,
        "llm": 0,
        "ict": 0,
        "template": 0,
        "dropped": 0,
        "judged": 0,
        "judged_positive": 0,
        "near_duplicates_skipped": 0,
        "same_entry_skipped": 0,
        "styles": {},
    }
    queries = _style_queries(passages, eligible, quotas, method, llm, rng, report)
    if not queries:  # BM25 then mined for no query at all and failed inside bm25s with a traceback
        raise ChipadaptError(no_queries_message(report, method, min_passage_chars))
    for entry in queries:
        report[entry[2]] += 1
    if method == "llm":
        warn_if_fallbacks_carry(report)
    warn_if_few_made(report, len(queries), min_passage_chars)

    by_id = {p.id: p for p in passages}
    mined = miner.search([entry[1] for entry in queries], mine_depth + 1)
    candidates = [[by_id[pid] for pid, _ in hits if pid != entry[0].id] for entry, hits in zip(queries, mined)]
    # Only LLM-written questions are judged (an ICT query is a sentence of its own passage). A small
    # judge says "No" to nearly everything, so its verdict is relative: a candidate is a positive
    # when the judge rates it at least as high (plus a margin) as the passage the question came from.
    extra_positive: dict[int, set[str]] = {}
    llm_queries = [qi for qi, entry in enumerate(queries) if entry[2] == "llm"] if llm and judge_depth > 0 else []
    if llm_queries:
        pairs = [(qi, queries[qi][0]) for qi in llm_queries] + [
            (qi, c) for qi in llm_queries for c in candidates[qi][:judge_depth]
        ]
        scores = llm.yes_scores([(queries[qi][1], passage) for qi, passage in pairs])
        reference = {qi: score for (qi, _), score in zip(pairs[: len(llm_queries)], scores)}
        for (qi, cand), score in zip(pairs[len(llm_queries) :], scores[len(llm_queries) :]):
            report["judged"] += 1
            if score >= reference[qi] + judge_margin:
                report["judged_positive"] += 1
                extra_positive.setdefault(qi, set()).add(cand.id)

    groups = []
    for qi, ((src, query, how, positive_text, style, guard), cands) in enumerate(zip(queries, candidates)):
        positives = [Passage(src.id, positive_text, src.source)] + [
            by_id[pid] for pid in sorted(extra_positive.get(qi, ()))
        ]
        positive_shingles = [shingles(p.text) for p in positives] + [shingles(src.text)]
        negatives, hard = pick_negatives(
            cands, passages, positives, positive_shingles, num_negatives, near_duplicate_jaccard, rng, report, guard
        )
        extra = {"style": style, "hard_negatives": hard, **({"guard": list(guard)} if guard else {})}
        groups.append(TrainingGroup(f"syn{qi:05d}", query, how, positives, negatives, extra))
    log.info("synthetic data: %s", report)
    return groups, report
