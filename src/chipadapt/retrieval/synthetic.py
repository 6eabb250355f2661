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
from dataclasses import dataclass, field

import torch

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.synthetic_llm import LLMHelper
from chipadapt.retrieval.synthetic_negatives import pick_negatives, shingles
from chipadapt.retrieval.synthetic_queries import _style_queries, style_quotas

log = logging.getLogger(__name__)


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


@torch.no_grad()  # the judge's forward passes need no graph
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
