"""The extension appends, for every chosen token, its whole merge chain: each new vocabulary entry has
a merge that makes it from entries that exist by then. A missing merge still round-trips every text
(the pieces are decoded instead) and only trims the savings, so round trips and savings thresholds do
not see it; these checks do, on a byte-level base (SmolLM2, Llama-3) and a SentencePiece-BPE one
(Llama-2)."""

import json
from collections import Counter

import pytest
from helpers.byte_level_base import byte_level_base
from helpers.sentencepiece_base import sentencepiece_base
from helpers.tokenizer_material import DOMAIN, texts
from tokenizers import Tokenizer

from chipadapt.tokenizer.extend import MergeExtension, extended_tokenizer_json
from chipadapt.tokenizer.family import tokenizer_family
from chipadapt.tokenizer.produced import choose_produced
from chipadapt.tokenizer.select_tokens import Candidate, chain_intermediates
from chipadapt.tokenizer.words import word_counts


def merge_pairs(model: dict) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]


def assert_chains_appended(base_json: str, extended_json: str, chosen: list[Candidate], new_tokens: list[str]):
    base, extended = json.loads(base_json)["model"], json.loads(extended_json)["model"]
    base_merges, merges = merge_pairs(base), merge_pairs(extended)
    assert merges[: len(base_merges)] == base_merges  # base ranks unchanged
    assert set(extended["vocab"]) - set(base["vocab"]) == set(new_tokens)
    # Walk the appended merges in rank order: each joins entries that exist by then, into a vocabulary
    # entry. A new entry no merge makes is never produced (BPE has no other way to reach a multi-piece
    # entry), whatever the text: exactly what dropping a merge leaves behind.
    made = set(base["vocab"])
    for a, b in merges[len(base_merges) :]:
        assert a in made and b in made, (a, b)
        assert a + b in extended["vocab"], (a, b)
        made.add(a + b)
    assert [t for t in new_tokens if t not in made] == []
    ranked = set(merges)
    for cand in chosen:
        steps = [cand.pieces[0], *chain_intermediates(cand.pieces)]
        assert [(acc, p) for acc, p in zip(steps, cand.pieces[1:]) if (acc, p) not in ranked] == [], cand.token


@pytest.mark.parametrize("merges_as", ["pairs", "strings"])
def test_byte_level_every_new_entry_is_made_by_its_chain_and_produced_alone(merges_as):
    base_json = byte_level_base([("Ġ", "F"), ("I", "F")]).to_str()
    if merges_as == "strings":  # tokenizer.json files written before tokenizers 0.20 spell a merge "a b"
        spec = json.loads(base_json)
        spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
        base_json = json.dumps(spec, ensure_ascii=False)
    # ' BA' and ' BAD' share their steps 'ĠB', 'ĠBA'; 'IFO' starts from a base merge's result.
    chosen = [
        Candidate("IFO", ["IF", "O"], 50, 0),
        Candidate("ĠBA", ["Ġ", "B", "A"], 12, 0),
        Candidate("ĠBAD", ["Ġ", "B", "A", "D"], 9, 0),
    ]
    extended_json, new_tokens = extended_tokenizer_json(base_json, chosen)
    assert new_tokens == ["IFO", "ĠB", "ĠBA", "ĠBAD"]
    assert merge_pairs(json.loads(extended_json)["model"])[2:] == [("IF", "O"), ("Ġ", "B"), ("ĠB", "A"), ("ĠBA", "D")]
    assert_chains_appended(base_json, extended_json, chosen, new_tokens)
    # No chain here collides with another, and a byte-level word is the text itself: the text each new
    # entry decodes to encodes, alone, to exactly that entry.
    extended = Tokenizer.from_str(extended_json)
    for token in new_tokens:
        token_id = extended.token_to_id(token)
        assert extended.encode(extended.decode([token_id])).ids == [token_id], token


def test_one_parsed_base_extended_round_after_round_gives_each_round_what_a_fresh_extension_gives():
    # choose_produced parses the base once and extends it every round: a round's entries and merges must not
    # stay behind for the next (a shared vocab, merge list or set of known merges would).
    base_json = byte_level_base([("Ġ", "F"), ("I", "F")]).to_str()
    rounds = [
        [Candidate("ĠBAD", ["Ġ", "B", "A", "D"], 9, 0)],
        [Candidate("IFO", ["IF", "O"], 50, 0), Candidate("ĠBA", ["Ġ", "B", "A"], 12, 0)],
        [],
    ]
    extension = MergeExtension(base_json)
    for chosen in rounds:
        assert extension.extend(chosen) == extended_tokenizer_json(base_json, chosen)
    assert extension.extend([])[0] == json.dumps(json.loads(base_json), ensure_ascii=False)


def test_sentencepiece_bpe_every_kept_token_is_made_by_its_chain_and_produced_alone(tmp_path):
    # Llama-2 style: sentencepiece BPE with byte fallback, merges stored as strings, words led by '▁'.
    base = sentencepiece_base(tmp_path, split_digits=True)
    family, domain = tokenizer_family(base), texts(DOMAIN)
    counts = word_counts(family, domain)
    settings = dict(
        domain_vocab=family.train_domain_vocab(domain, 1000),
        general_counts=Counter(),
        max_new_tokens=60,
        max_general_per_million=1e6,
        min_savings=3,
        max_pieces=6,
    )
    chosen, extended_json, new_tokens, _ = choose_produced(base, counts, settings)
    assert len(chosen) >= 10 and any(len(c.pieces) > 2 for c in chosen)
    assert_chains_appended(base.to_str(), extended_json, chosen, new_tokens)
    # Every kept token is produced inside some domain word (produced.py); BPE applies merges by rank
    # inside a word and none crosses a finished token, so the word alone gives the same token. (Not for
    # a base with ignore_merges, Llama-3's, where a word that is a vocabulary entry skips the merges.)
    model = Tokenizer.from_str(extended_json).model
    assert not model.ignore_merges
    assert [c.token for c in chosen if [t.value for t in model.tokenize(c.token)] != [c.token]] == []
