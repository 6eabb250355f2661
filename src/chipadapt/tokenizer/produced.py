"""Keep only new tokens the extended tokenizer really produces.

The selection (select_tokens.py) values each candidate as if its merge chain fired on its own, but
BPE applies all merges of a word by rank: an earlier-appended merge of another candidate can take a
piece first. With ' FIFO' = ĠF + IF + O and 'IFO' = IF + O appended before it, the word ' FIFO'
becomes ĠF + IFO, and ' FIFO' (and its step 'ĠFIF') would be rows nothing ever produces. So after
extending, every domain word is encoded with the extended tokenizer; candidates whose token never
comes out are excluded and the budget is refilled from the next ones, until every added entry is
produced or is a step of a produced token's chain (bounded: a last pass only drops).
"""

import logging
from collections import Counter

from tokenizers import Tokenizer

from chipadapt.tokenizer.extend import extended_tokenizer_json
from chipadapt.tokenizer.select_tokens import Candidate, chain_intermediates, select_new_tokens

log = logging.getLogger(__name__)

MAX_ROUNDS = 8  # refills; the collisions the quickstart has settle in 2-3


def unproduced(extended_json: str, chosen: list[Candidate], new_tokens: list[str], domain_counts: Counter) -> set:
    """Chosen tokens the extended tokenizer produces on no domain word, and added entries that are
    neither produced nor a step of a produced token's chain."""
    model = Tokenizer.from_str(extended_json).model
    new = set(new_tokens)
    out: set[str] = set()
    for word in domain_counts:
        out.update(t.value for t in model.tokenize(word) if t.value in new)
    steps = {step for cand in chosen if cand.token in out for step in chain_intermediates(cand.pieces)}
    return {c.token for c in chosen if c.token not in out} | (new - out - steps)


def choose_produced(base, domain_counts: Counter, select_args: dict) -> tuple[list[Candidate], str, list[str], int]:
    """select_new_tokens(base, domain_counts=..., **select_args) and the extension, with tokens never
    produced dropped and replaced: (chosen, extended tokenizer.json, new entries, how many dropped)."""
    exclude: set[str] = set()
    for _ in range(MAX_ROUNDS):
        chosen, _ = select_new_tokens(base, domain_counts=domain_counts, exclude=frozenset(exclude), **select_args)
        extended_json, new_tokens = extended_tokenizer_json(base.to_str(), chosen)
        dead = unproduced(extended_json, chosen, new_tokens, domain_counts)
        if not dead:
            return chosen, extended_json, new_tokens, len(exclude)
        exclude |= {c.token for c in chosen if c.token in dead or set(chain_intermediates(c.pieces)) & dead}
    # Still colliding after the refills: drop without refilling until none is left unproduced (each
    # pass removes at least one candidate, so this ends).
    while True:
        chosen = [c for c in chosen if c.token not in exclude]
        extended_json, new_tokens = extended_tokenizer_json(base.to_str(), chosen)
        dead = unproduced(extended_json, chosen, new_tokens, domain_counts)
        if not dead:
            log.info("new tokens: %d candidates dropped, never produced by the extended tokenizer", len(exclude))
            return chosen, extended_json, new_tokens, len(exclude)
        exclude |= {c.token for c in chosen if c.token in dead or set(chain_intermediates(c.pieces)) & dead}
