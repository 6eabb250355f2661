"""Negatives of a synthetic training query: BM25-mined candidates first, random passages fill up, and never
a near-duplicate of a positive nor a passage that answers the same lookup."""

import random
import re

from chipadapt.retrieval.passages import Passage


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


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
