"""Validation reads the same held-out text whatever seq_len and tokenizer: whole documents in a fixed
order up to data.val_max_bytes, the last one cut at a token, packed with nothing dropped. Before, a cap
of N sequences read N x seq_len tokens: a seq_len 64 vs 128 sweep scored its starting model 4.867 vs
4.703 bits per byte on other text, and the augmented tokenizer put more text into its N sequences."""

from importlib.resources import files

import numpy as np
import pytest
from conftest import TINY_FAST, compose
from omegaconf import OmegaConf
from test_packing_and_blend import make_source

from chipadapt.data.val_text import reading_order, validation_text
from chipadapt.errors import ChipadaptError
from chipadapt.models.tiny import train_tiny_tokenizer

TEXT = (".md", ".txt", ".sv", ".tcl", ".sdc", ".ys", ".jsonl")


def tiny_tokenizer(tmp_path):
    from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder

    return load_tokenizer(resolve_model_folder(compose(TINY_FAST, tmp_path / "run").model))


def datamodule(tmp_path, tokenizer, *overrides: str):
    from hydra.utils import instantiate

    cfg = compose([*TINY_FAST, *overrides], tmp_path / "run")
    module = instantiate(cfg.stage.datamodule)(
        data=cfg.data,
        tokenizer=tokenizer,
        separator_token=cfg.model.doc_separator,
        token_cache_dir=str(tmp_path / "tokens"),
        seed=cfg.seed,
    )
    module.setup("fit")
    return module


def split_tokens(module, split: str) -> list[int]:
    """The tokens validation predicts in `split` (each row's but its first, the context), joined back
    into one stream."""
    packed = module.val_sets[split]
    return [t for i in range(len(packed)) for t in packed[i]["input_ids"].tolist()[1:]]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tiny"))


def test_every_seq_len_reads_the_same_tokens_and_records_the_same_text(tmp_path, tokenizer):
    # 3,000 bytes: less than either split holds, so the budget decides where the text ends
    runs = {n: datamodule(tmp_path, tokenizer, f"data.seq_len={n}", "data.val_max_bytes=3000") for n in (16, 64, 128)}
    for split in ("domain", "general"):
        streams = {n: split_tokens(m, split) for n, m in runs.items()}
        assert streams[16] == streams[64] == streams[128], split
        assert len({len(m.val_sets[split]) for m in runs.values()}) == 3  # the windows differ, not the text
    records = [m.stats["val_text"] for m in runs.values()]
    assert records[0] == records[1] == records[2]
    domain = records[0]["domain"]
    assert 3000 <= domain["bytes"] < 3000 + max(domain["cut_token_bytes"], 1) and domain["documents"] >= 2


def test_a_tokenizer_that_packs_more_text_per_token_reads_the_same_text_within_one_token(tmp_path, tokenizer):
    base = datamodule(tmp_path / "base", tokenizer, "data.val_max_bytes=3000")
    # Another byte-level BPE with 4x the vocabulary: fewer, longer tokens (as the augmented tokenizer's)
    corpus = [f.read_text() for f in sorted((files("chipadapt") / "resources").rglob("*")) if f.suffix in TEXT]
    coarse_tokenizer = train_tiny_tokenizer(corpus, vocab_size=2048)
    coarse = datamodule(tmp_path / "coarse", coarse_tokenizer, "data.val_max_bytes=3000")
    for split in ("domain", "general"):
        a, b = base.stats["val_text"][split], coarse.stats["val_text"][split]
        assert a["documents_fingerprint"] == b["documents_fingerprint"] and a["documents"] == b["documents"]
        assert abs(a["bytes"] - b["bytes"]) < max(a["cut_token_bytes"], b["cut_token_bytes"], 1)
        text_a = tokenizer.decode(split_tokens(base, split))
        text_b = coarse_tokenizer.decode(split_tokens(coarse, split))
        assert len(split_tokens(coarse, split)) < len(split_tokens(base, split))  # it does pack more per token
        short, long = sorted((text_a, text_b), key=len)
        assert long.startswith(short) and len(long.encode()) - len(short.encode()) < 16


def test_the_budget_takes_whole_documents_in_a_fixed_order_and_cuts_the_last_at_a_token():
    sources = [make_source([4, 6, 3]), make_source([5, 2], start=100)]
    names = ["rtl", "docs"]
    rows = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]])
    token_bytes = np.full(200, 3)  # 3 bytes a token
    everything = validation_text(sources, names, rows, token_bytes, 10**6)
    assert everything.last_tokens is None and everything.bytes == 3 * 20 and len(everything.keys) == 5
    order = [k for k in everything.keys]
    assert order == [f"{names[s]}/{sources[s].doc_ids[d]}" for s, d in everything.rows]
    # the order is the keys', not the rows' (sources listed the other way round read the same documents)
    assert [order[i] for i in reading_order(order)] == order
    first_len = sources[everything.rows[0][0]].doc_length(everything.rows[0][1])
    cut = validation_text(sources, names, rows, token_bytes, 3 * first_len + 4)  # 2 tokens into the second
    assert cut.last_tokens == 2 and cut.bytes == 3 * first_len + 6 and cut.cut_token_bytes == 3
    assert cut.keys == order[:2] and cut.record()["documents"] == 2
    exact = validation_text(sources, names, rows, token_bytes, 3 * first_len)  # ends with the first document
    assert exact.last_tokens is None and exact.keys == order[:1] and exact.cut_token_bytes == 0


def test_the_former_sequence_cap_is_an_error_naming_the_byte_cap(tmp_path):
    from omegaconf import open_dict

    from chipadapt.cli import describe_hydra_error
    from chipadapt.config_schema import validate

    # On the command line: Hydra refuses the override of a key no config has; the one line names the new key.
    with pytest.raises(Exception) as composing:
        compose([*TINY_FAST, "data.val_max_sequences=8"], tmp_path / "run")
    assert describe_hydra_error(composing.value).startswith("data.val_max_sequences: replaced by data.val_max_bytes")
    # In a user's own data config written for the earlier release: the same, not "unknown key".
    cfg = compose(TINY_FAST, tmp_path / "run")
    with open_dict(cfg):
        cfg.data.val_max_sequences = 8
    with pytest.raises(ChipadaptError, match=r"^data.val_max_sequences: replaced by data.val_max_bytes"):
        validate(cfg)
    with pytest.raises(ChipadaptError, match=r"^data.val_max_bytes: 0 must be > 0"):
        validate(compose([*TINY_FAST, "data.val_max_bytes=0"], tmp_path / "run"))
    cfg = compose([*TINY_FAST, "data.val_max_bytes=1e4"], tmp_path / "run")
    validate(cfg)
    assert OmegaConf.select(cfg, "data.val_max_bytes") == 10000


def test_a_budget_too_small_for_one_prediction_is_refused_not_a_perfect_score(tmp_path, tokenizer):
    # One byte kept one token a split: no labelled token, and the sums read bpb 0.0000, ppl 1.000.
    with pytest.raises(ChipadaptError, match=r"^data.val_max_bytes=1: validation split '\w+' holds 1 token"):
        datamodule(tmp_path, tokenizer, "data.val_max_bytes=1")
