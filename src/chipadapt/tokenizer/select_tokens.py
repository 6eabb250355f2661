"""Choose the new tokens: pieces of the domain tokenizer that the base vocabulary lacks, rare in
general text, ranked by how many tokens they save on the domain corpus per vocabulary entry spent.

A new token is taught to the base BPE as a chain of merges over its base pieces (see extend.py),
so it can only fire where the base segmentation of a word has those pieces side by side. The
savings estimate counts exactly those places: for every word, every run of two or more adjacent
base pieces is a potential new token saving (pieces - 1) tokens per occurrence.
"""

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass

from chipadapt.tokenizer.words import segment

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    token: str  # in the tokenizer's internal alphabet
    pieces: list[str]  # its base segmentation
    savings: int  # estimated tokens saved on the domain corpus
    general_count: int  # occurrences (as aligned runs) in the general corpus


def span_savings(backend, counts: Counter, max_pieces: int) -> Counter:
    """For every run of 2..max_pieces adjacent base pieces inside a word: tokens it would save."""
    savings: Counter = Counter()
    for word, n in counts.items():
        pieces = segment(backend, word)
        for i in range(len(pieces) - 1):
            joined = pieces[i]
            for j in range(i + 1, min(len(pieces), i + max_pieces)):
                joined += pieces[j]
                savings[joined] += n * (j - i)
    return savings


DIGITS = "0123456789"
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # a SentencePiece byte-fallback piece, not text


def digit_rule(backend) -> tuple[bool, str]:
    """Whether the base keeps every digit a token of its own, and what decided it: its pre-tokenizer
    isolates each (SmolLM2, StarCoder: Digits(individual_digits)), or it is SentencePiece-style (byte
    fallback) and no piece of its vocabulary holds a digit beside anything else (Llama-2, Mistral: trained
    with sentencepiece's split_digits, which their tokenizer.json does not carry; its BPE merely has no
    merge that joins one). A SentencePiece vocabulary with one such piece (`▁20`) joins digits."""

    def walk(node: dict) -> bool:
        if node.get("type") == "Digits" and node.get("individual_digits"):
            return True
        return any(walk(child) for child in node.get("pretokenizers") or [])

    if backend.pre_tokenizer is not None and walk(json.loads(backend.pre_tokenizer.__getstate__())):
        return True, "pre-tokenizer splits each digit off (Digits)"
    if not getattr(backend.model, "byte_fallback", False):
        # byte-level BPE without the Digits rule (GPT-2): its merges join digits freely
        return False, "byte-level BPE has no pre-tokenizer rule that splits digits"
    markup = {token.content for token in backend.get_added_tokens_decoder().values()}  # <unused12>
    vocab = backend.get_vocab(with_added_tokens=False)
    for piece in sorted(vocab, key=vocab.__getitem__):  # by id: the same piece named every time
        if piece not in markup and not BYTE_PIECE.fullmatch(piece) and len(piece) > 1:
            if any(c in DIGITS for c in piece):
                return False, f"vocabulary piece {piece!r} joins a digit with more"
    return True, "SentencePiece vocabulary has no piece that joins a digit with anything (split_digits)"


def splits_digits(backend) -> bool:
    """Whether the base keeps every digit a token of its own (digit_rule)."""
    return digit_rule(backend)[0]


def chain_intermediates(pieces: list[str]) -> list[str]:
    """Tokens a left-to-right merge chain creates on the way to the full token (the last is the token)."""
    out, acc = [], pieces[0]
    for piece in pieces[1:]:
        acc += piece
        out.append(acc)
    return out


def select_new_tokens(
    backend,
    domain_vocab: list[str],
    domain_counts: Counter,
    general_counts: Counter,
    max_new_tokens: int,
    max_general_per_million: float,
    min_savings: int,
    max_pieces: int,
    exclude: frozenset[str] = frozenset(),
) -> tuple[list[Candidate], list[str]]:
    """Returns the chosen candidates and every vocabulary entry to add (tokens + chain intermediates),
    in merge order. `exclude`: tokens not to choose (produced.py drops those the extended tokenizer
    never produces, or that save too little once it runs)."""
    pool = candidate_pool(
        backend, domain_vocab, domain_counts, general_counts, max_general_per_million, min_savings, max_pieces
    )
    return choose_greedy(pool, backend.get_vocab(), max_new_tokens, min_savings, exclude)


def candidate_pool(
    backend,
    domain_vocab: list[str],
    domain_counts: Counter,
    general_counts: Counter,
    max_general_per_million: float,
    min_savings: int,
    max_pieces: int,
) -> list[Candidate]:
    """Every domain token that may be added, best savings per new entry first. The costly part of the
    selection (both corpora segmented): produced.py computes it once and chooses from it every round."""
    base_vocab = backend.get_vocab()
    lone_digits, why = digit_rule(backend)
    # Once per selection: a wrong guess about a Llama-2-style base is seen in the log, with its reason.
    log.info("tokenizer: new tokens %s digits: the base's %s", "may not hold" if lone_digits else "may hold", why)
    domain_savings = span_savings(backend, domain_counts, max_pieces)
    general_runs = span_savings(backend, general_counts, max_pieces)
    general_words = max(1, sum(general_counts.values()))

    def general_count(run: str, n_pieces: int) -> int:
        return general_runs[run] // (n_pieces - 1) if general_runs[run] else 0

    candidates = []
    for token in domain_vocab:
        if token in base_vocab or domain_savings[token] < min_savings:
            continue
        if lone_digits and any(c in DIGITS for c in token):
            # The base keeps every digit alone: no merge may join one, and the model never saw a token
            # that did. (A Digits pre-tokenizer already keeps digits out of the words counted here; a
            # SentencePiece base's words, `▁2024`, hold them joined.) ASCII digits only: in the byte-level
            # alphabet '½', '²', '¹' stand for bytes that are parts of letters (Cyrillic 'н' is 'Ð½').
            continue
        pieces = segment(backend, token)
        if len(pieces) < 2 or len(pieces) > max_pieces:
            continue
        if "".join(pieces) != token:
            # A character the base vocabulary lacks became <0xNN> byte-fallback pieces (or unk):
            # a merge chain is spelled by concatenating pieces, so it cannot reach this token.
            continue
        # Every merge of the chain fires on its own wherever its pieces meet, so the token and each
        # intermediate must be rare in general words: that keeps general text encoded as before.
        chain = chain_intermediates(pieces)
        general = max(general_count(run, k + 2) for k, run in enumerate(chain))
        if general * 1e6 / general_words > max_general_per_million:
            continue
        candidates.append(Candidate(token, pieces, domain_savings[token], general_count(token, len(pieces))))
    return sorted(candidates, key=lambda c: -c.savings / (len(c.pieces) - 1))


def choose_greedy(
    pool: list[Candidate], base_vocab: dict, max_new_tokens: int, min_savings: int, exclude: frozenset[str]
) -> tuple[list[Candidate], list[str]]:
    """Greedy over candidate_pool's order: best savings per new vocabulary entry first; intermediates
    shared between chains are paid for once. (chosen, entries to add in merge order)."""
    added: dict[str, None] = {}
    chosen: list[Candidate] = []
    for cand in pool:
        if cand.token in exclude:
            continue
        new = [t for t in chain_intermediates(cand.pieces) if t not in base_vocab and t not in added]
        if not new:
            continue
        if len(added) + len(new) > max_new_tokens:
            continue
        if cand.savings / len(new) < min_savings:
            continue
        for t in new:
            added[t] = None
        chosen.append(cand)
    return chosen, list(added)
