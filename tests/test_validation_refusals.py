"""Settings under which validation's figures would not add up are refused before any work: a separator
that is text (its bytes scored as the document's) and rows of one token (nothing to predict from)."""

import re

import pytest
from conftest import TINY_FAST, compose
from test_validation_text import tiny_tokenizer

from chipadapt.errors import ChipadaptError


def test_a_separator_that_is_text_not_markup_is_refused(tmp_path):
    from hydra.utils import instantiate

    tokenizer = tiny_tokenizer(tmp_path)
    # Sorted: get_vocab's order changes between processes, and a piece such as "Ġ[" once made an invalid pattern.
    text_piece = sorted(p for p in tokenizer.get_vocab() if p not in tokenizer.all_special_tokens and len(p) > 1)[0]
    cfg = compose(TINY_FAST, tmp_path / "run")
    make = instantiate(cfg.stage.datamodule)
    with pytest.raises(
        ChipadaptError, match=rf"^model.doc_separator: {re.escape(repr(text_piece))} is text to the model's tokenizer"
    ):
        make(data=cfg.data, tokenizer=tokenizer, separator_token=text_piece, token_cache_dir=None, seed=0)
    # The configured one, a special token, is taken.
    make(data=cfg.data, tokenizer=tokenizer, separator_token=cfg.model.doc_separator, token_cache_dir=None, seed=0)


def test_rows_of_one_token_are_refused_when_the_config_is_checked(tmp_path):
    from chipadapt.config_schema import validate

    # Before, the refusal came once every source was tokenized, as validation was set up.
    with pytest.raises(ChipadaptError, match=r"^data.seq_len: 1 must be >= 2"):
        validate(compose([*TINY_FAST, "data.seq_len=1"], tmp_path / "run"))
    validate(compose([*TINY_FAST, "data.seq_len=2"], tmp_path / "run"))


def test_an_added_token_marked_special_is_taken_as_the_separator(tmp_path):
    from hydra.utils import instantiate
    from tokenizers import AddedToken

    # Llama-3's `<|end_of_text|>`: an added token with special=True, which all_special_tokens does not list.
    tokenizer = tiny_tokenizer(tmp_path)
    tokenizer.add_tokens([AddedToken("<|end_of_text|>", special=True), AddedToken("<|plain|>", special=False)])
    assert "<|end_of_text|>" not in tokenizer.all_special_tokens
    cfg = compose(TINY_FAST, tmp_path / "run")
    make = instantiate(cfg.stage.datamodule)
    make(data=cfg.data, tokenizer=tokenizer, separator_token="<|end_of_text|>", token_cache_dir=None, seed=0)
    with pytest.raises(ChipadaptError, match=r"^model.doc_separator: '<\|plain\|>' is text"):
        make(data=cfg.data, tokenizer=tokenizer, separator_token="<|plain|>", token_cache_dir=None, seed=0)
