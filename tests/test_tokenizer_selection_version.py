"""An augmented build chosen by an earlier version of the token selection is not reused for the same
inputs: the selection's version is in the cache key, and the earlier entry is left where it is."""

from conftest import compose, write_jsonl
from omegaconf import OmegaConf

import chipadapt.tokenizer.augment as augment
from chipadapt.tokenizer.augment import DomainTokenizer

RTL = ["module fifo_ctrl(input clk_i, input rst_ni); always_ff @(posedge clk_i) begin end endmodule"] * 40


def domain_tokenizer(tmp_path) -> DomainTokenizer:
    domain = write_jsonl(tmp_path / "domain.jsonl", [{"text": t} for t in RTL])
    return DomainTokenizer(
        cache_dir=str(tmp_path / "cache"),
        sources=OmegaConf.create({"rtl": {"path": str(domain)}}),
        report_general=None,
        domain_vocab_size=600,
        max_new_tokens=20,
        max_general_per_million=0.0,
        min_savings=2,
        max_pieces=6,
        init={"input": "mean", "output": "zero"},
    )


def test_a_build_of_another_selection_version_is_rebuilt_and_kept(tmp_path, monkeypatch):
    from chipadapt.models.hf_folder import resolve_model_folder

    base = resolve_model_folder(compose(["model=tiny"], tmp_path).model)
    monkeypatch.setattr(augment, "SELECTION_VERSION", 2)
    old = domain_tokenizer(tmp_path)(base)
    monkeypatch.setattr(augment, "SELECTION_VERSION", 3)
    new = domain_tokenizer(tmp_path)(base)
    assert new != old and (new / "tokenizer_report.json").is_file()
    assert (old / "tokenizer_report.json").is_file()  # not deleted: a cache entry, just not read
    assert domain_tokenizer(tmp_path).build_folder(base) == new
