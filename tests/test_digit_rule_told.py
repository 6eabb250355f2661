"""The selection says once which way the digit rule decided, and what decided it: a vocabulary piece that
joins digits, or none in a SentencePiece vocabulary (tokenizer/select_tokens.py digit_rule)."""

import logging
from collections import Counter

import pytest
from helpers.sentencepiece_base import sentencepiece_base

from chipadapt.tokenizer.select_tokens import candidate_pool, digit_rule


@pytest.mark.parametrize("split_digits", [True, False])
def test_the_digit_rule_is_told_with_what_decided_it(tmp_path, caplog, split_digits):
    backend = sentencepiece_base(tmp_path, split_digits)
    lone, why = digit_rule(backend)
    with caplog.at_level(logging.INFO, logger="chipadapt.tokenizer.select_tokens"):
        candidate_pool(backend, [], Counter(), Counter(), 1e6, 3, 6)
    told = [r.getMessage() for r in caplog.records if "digits" in r.getMessage()]
    assert len(told) == 1 and why in told[0]
    if split_digits:
        assert lone and told[0].startswith("tokenizer: new tokens may not hold digits") and "split_digits" in why
    else:  # the piece that decided it, one the vocabulary has
        piece = why.split("'")[1]
        assert not lone and piece in backend.get_vocab() and any(c.isdigit() for c in piece) and len(piece) > 1
