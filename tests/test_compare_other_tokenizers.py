"""compare.py does not pair per-token figures of runs whose items were cut into other tokens (an
augmented tokenizer against the base model's): `perplexity.domain.ppl 25.69 -> 63.13` was a paired
verdict on perplexities per different units. Their rows say "not paired" and why, compare.md notes it
under the table, and bits per byte (per the same bytes) stay paired."""

from test_compare_same_items import _cfg, _not_paired, _ppl_run

from chipadapt.eval.compare import compare
from chipadapt.eval.paired_compare import paired_rows

DOCS = [(596, 1800), (400, 1200), (500, 1500), (300, 900)]


def test_ppl_of_another_tokenizer_is_not_paired_and_bpb_is(tmp_path):
    base = _ppl_run(tmp_path / "base", DOCS, 1.0)
    augmented = _ppl_run(tmp_path / "aug", [(t * 9 // 10, b) for t, b in DOCS], 1.1)
    rows = paired_rows([("base", base), ("aug", augmented)])
    reason = _not_paired(rows)[("aug", "perplexity.domain.ppl")]
    assert reason.startswith("the runs use different tokenizers (per-token figures; compare bpb): 'domain/d0' is 596")
    assert [r["metric"] for r in rows if r["verdict"] != "not paired"] == ["perplexity.domain.bpb"]
    same = paired_rows([("base", base), ("again", _ppl_run(tmp_path / "again", DOCS, 1.1))])
    assert not _not_paired(same)  # one tokenizer: both paired


def test_compare_md_notes_the_per_token_figures_of_other_tokenizers(tmp_path):
    base = _ppl_run(tmp_path / "base", DOCS, 1.0)
    augmented = _ppl_run(tmp_path / "aug", [(t * 9 // 10, b) for t, b in DOCS], 1.1)
    compare(_cfg(tmp_path, [base, augmented], ["base", "aug"]))
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "perplexity.domain.ppl of aug and of base: the runs use different tokenizers" in text
    assert "perplexity.domain.bpb of" not in text
