"""Keep only new tokens the extended tokenizer really produces, and that save enough when it does.

The selection (select_tokens.py) values each candidate as if its merge chain fired on its own, but
BPE applies all merges of a word by rank: an earlier-appended merge of another candidate can take a
piece first. With ' FIFO' = ĠF + IF + O and 'IFO' = IF + O appended before it, the word ' FIFO'
becomes ĠF + IFO, and ' FIFO' (and its step 'ĠFIF') would be rows nothing ever produces. Being
produced is not enough either: a token estimated to save thousands may come out a handful of times
once other chains took most of its places ('Ġ../../../': 5,276 estimated, produced 4 times on the
quickstart corpus). So after extending, every domain word is encoded with the extended tokenizer; a
candidate that never comes out, or whose occurrences x (pieces - 1) fall below min_savings, is
excluded and the budget is refilled from the next ones, until every kept token meets min_savings and
every added entry is produced or is a step of a kept token's chain (bounded: a last pass only drops).
"""

import logging
from collections import Counter

from tokenizers import Tokenizer

from chipadapt.tokenizer.extend import MergeExtension
from chipadapt.tokenizer.select_tokens import Candidate, candidate_pool, chain_intermediates, choose_greedy

log = logging.getLogger(__name__)

# Refills. Each round costs one extension and one pass over the domain words (the candidate pool is
# computed once); a 4,000-token budget on the shared corpus needed 7 rounds for never-produced
# tokens alone (936 -> 338 -> 137 -> 57 -> 25 -> 9 -> 6 -> 0).
MAX_ROUNDS = 32

NEVER_PRODUCED = "never_produced"
BELOW_MIN_SAVINGS = "below_min_savings"


def production_counts(extended_json: str, new_tokens: list[str], domain_counts: Counter) -> Counter:
    """How often the extended tokenizer produces each new entry on the domain words (with their counts)."""
    model = Tokenizer.from_str(extended_json).model
    new = set(new_tokens)
    used: Counter = Counter()
    for word, n in domain_counts.items():
        for t in model.tokenize(word):
            if t.value in new:
                used[t.value] += n
    return used


def rejected(chosen: list[Candidate], new_tokens: list[str], used: Counter, min_savings: int) -> dict[str, str]:
    """Chosen tokens to exclude, with why: never produced (or a chain with entries neither produced
    nor a step of a kept token's chain), or realising fewer than min_savings saved tokens."""
    out = {c.token: NEVER_PRODUCED for c in chosen if not used[c.token]}
    out |= {
        c.token: BELOW_MIN_SAVINGS
        for c in chosen
        if used[c.token] and used[c.token] * (len(c.pieces) - 1) < min_savings
    }
    steps = {step for c in chosen if c.token not in out for step in chain_intermediates(c.pieces)}
    orphans = {t for t in new_tokens if not used[t] and t not in steps}
    for c in chosen:
        if c.token not in out and set(chain_intermediates(c.pieces)) & orphans:
            out[c.token] = NEVER_PRODUCED
    return out


def choose_produced(
    base, domain_counts: Counter, select_args: dict
) -> tuple[list[Candidate], str, list[str], dict[str, int]]:
    """select_tokens.select_new_tokens(base, domain_counts=..., **select_args) and the extension, with
    the tokens rejected above dropped and replaced: (chosen, extended tokenizer.json, new entries,
    how many were dropped for each reason)."""
    min_savings = select_args["min_savings"]
    pool = candidate_pool(
        base,
        select_args["domain_vocab"],
        domain_counts,
        select_args["general_counts"],
        select_args["max_general_per_million"],
        min_savings,
        select_args["max_pieces"],
    )
    base_vocab = base.get_vocab()
    extension = MergeExtension(base.to_str())  # the base read once, not every round
    excluded: dict[str, str] = {}
    chosen: list[Candidate] = []
    for round_ in range(MAX_ROUNDS + 1):
        if round_ < MAX_ROUNDS:
            chosen, _ = choose_greedy(pool, base_vocab, select_args["max_new_tokens"], min_savings, frozenset(excluded))
        else:
            # Still colliding after the refills: drop without refilling until none is rejected (each
            # pass removes at least one candidate, so this ends).
            log.warning("new tokens: still rejecting after %d refills; dropping the rest without refilling", MAX_ROUNDS)
        while True:
            chosen = [c for c in chosen if c.token not in excluded]
            extended_json, new_tokens = extension.extend(chosen)
            bad = rejected(chosen, new_tokens, production_counts(extended_json, new_tokens, domain_counts), min_savings)
            excluded |= bad
            if not bad:
                dropped = Counter(excluded.values())
                counts = {NEVER_PRODUCED: dropped[NEVER_PRODUCED], BELOW_MIN_SAVINGS: dropped[BELOW_MIN_SAVINGS]}
                log.info("new tokens dropped and refilled: %s", counts)
                return chosen, extended_json, new_tokens, counts
            if round_ < MAX_ROUNDS:
                break  # refill
