"""`eval.eda_script.eval_fraction=null` leaves no EDA script out of SFT (its `_aug` file holds the originals and
their paraphrases) while `eda_heldout` validates on every row of `_nonaug`: the before/after table's eda_heldout
figures were then on training rows, told nowhere. A warning names the source, and the manifest's data section
lists it (`val_not_held_out`); with a split, neither."""

import pytest
from conftest import TINY_FAST, compose, write_jsonl
from test_validation_text import tiny_tokenizer

SCRIPTS = [f"design.set_clock(period={i})\nrun_step_{i}()" for i in range(12)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tiny"))


def sft_data(tmp_path, tokenizer, fraction: str):
    from hydra.utils import instantiate

    eda = write_jsonl(
        tmp_path / "eda.jsonl", [{"prompt": f"write step {i}", "script": s} for i, s in enumerate(SCRIPTS)]
    )
    cfg = compose(
        [
            *TINY_FAST,
            "stage=sft",
            f"eval.eda_script.eval_fraction={fraction}",
            "data.sources.oasst=null",
            f"data.sources.eda_scripts.path={eda}",
            f"data.val_sources.eda_heldout.path={eda}",
            "data.val_fraction=0",
        ],
        tmp_path / "run",
    )
    module = instantiate(cfg.stage.datamodule)(
        data=cfg.data, tokenizer=tokenizer, separator_token=cfg.model.doc_separator, token_cache_dir=None, seed=0
    )
    module.setup("fit")
    return module


def test_a_null_fraction_says_eda_heldout_is_not_held_out(tmp_path, tokenizer, caplog):
    module = sft_data(tmp_path, tokenizer, "null")
    assert module.stats["val_not_held_out"] == ["eda_heldout"]
    warned = [r.getMessage() for r in caplog.records if "not held out" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("data.val_sources.eda_heldout: not held out")
    assert "data.sources.eda_scripts also trains on" in warned[0]


def test_a_split_says_nothing(tmp_path, tokenizer, caplog):
    module = sft_data(tmp_path, tokenizer, "0.5")
    assert "val_not_held_out" not in module.stats
    assert "not held out" not in caplog.text
