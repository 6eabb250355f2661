"""Training validation scores every byte of its held-out text, as evaluate.py's perplexity does: the first
token of each packed row was left unscored, so two tokenizers (or two seq_lens) scored other bytes of one
document, and compare.py paired their documents within a 16-byte slack. Now the stream starts after the
separator and each row starts with the last token of the row before; the records say `first_token:
scored`, whole documents pair only on equal bytes, and a run from before is not paired with one after."""

from importlib.resources import files

import numpy as np
import pytest
import torch
from test_compare_training_runs_paired import table, train_folder
from test_packing_and_blend import SEP, make_source, stream
from test_validation_text import TEXT, datamodule, tiny_tokenizer

from chipadapt.data.packing import PackedSequences, collate_causal_lm
from chipadapt.eval.paired_compare import paired_rows
from chipadapt.eval.same_items import difference
from chipadapt.stages.validation_items import validation_records


@pytest.mark.parametrize("seq_len", [2, 3, 7, 16, 50])
def test_every_token_of_the_stream_is_predicted_once_with_its_own_context(seq_len):
    sources = [make_source([5, 1, 12, 3]), make_source([20, 2], start=1000)]
    order = np.array([[0, 2], [1, 0], [0, 0]])
    packed = PackedSequences(sources, order, seq_len, SEP, last_tokens=4, with_items=True, start_token=SEP)
    expected = stream(sources, order)[:-1][: 13 + 21 + 4]
    rows = [packed[i]["input_ids"].tolist() for i in range(len(packed))]
    assert rows[0][0] == SEP and all(len(r) <= seq_len for r in rows)
    assert [t for r in rows for t in r[1:]] == expected  # the predicted tokens: the whole text, once each
    for before, after in zip(rows, rows[1:]):
        assert after[0] == before[-1]  # a row's first prediction is made from the token before it
    # each predicted token names its own document (the cut last one has no separator)
    documents = [d for i in range(len(packed)) for d in packed[i]["item_index"].tolist()[1:]]
    assert documents == [0] * 13 + [1] * 21 + [2] * 4


def scored_bytes(module, split: str) -> np.ndarray:
    """Bytes of text validation predicts per document of `split`, as modules/val_items.py sums them."""
    from chipadapt.modules.val_items import BYTES, batch_records, item_table

    packed, token_bytes = module.val_sets[split], torch.from_numpy(module._token_bytes)
    records = []
    for i in range(len(packed)):
        batch = collate_causal_lm([packed[i]], pad_id=module.pad_id)
        labels = batch["labels"][:, 1:]
        records.append(batch_records(batch, torch.zeros(labels.shape), labels, token_bytes, torch.float64))
    return item_table(torch.cat(records).numpy())[:, BYTES]


def test_two_tokenizers_score_the_same_bytes_of_every_whole_document(tmp_path):
    from chipadapt.models.tiny import train_tiny_tokenizer

    base_tokenizer = tiny_tokenizer(tmp_path / "tiny")
    corpus = [f.read_text() for f in sorted((files("chipadapt") / "resources").rglob("*")) if f.suffix in TEXT]
    coarse_tokenizer = train_tiny_tokenizer(corpus, vocab_size=2048)  # fewer, longer tokens
    settings = ("data.val_max_bytes=3000", "data.seq_len=16")
    base = datamodule(tmp_path / "base", base_tokenizer, *settings)
    coarse = datamodule(tmp_path / "coarse", coarse_tokenizer, *settings)
    for split in ("domain", "general"):
        a, b = scored_bytes(base, split), scored_bytes(coarse, split)
        text_a, text_b = base.stats["val_text"][split], coarse.stats["val_text"][split]
        assert text_a["first_token"] == text_b["first_token"] == "scored"
        assert text_a["first_token_context"] == base_tokenizer.convert_ids_to_tokens(base.separator_id)
        # every byte the split read is predicted (before: 1 token a row of 16 short)
        assert a.sum() == text_a["bytes"] and b.sum() == text_b["bytes"]
        assert len(a) == len(b) == text_a["documents"] >= 2
        assert (a[:-1] == b[:-1]).all(), split  # whole documents: the same bytes whatever the tokenizer
        assert abs(a[-1] - b[-1]) < max(text_a["cut_token_bytes"], text_b["cut_token_bytes"], 1)


def marked(cut: int = 0) -> dict:
    record = {"bytes": 1030, "documents": 4, "cut_token_bytes": cut, "documents_fingerprint": "f1"}
    return {**record, "first_token": "scored", "first_token_context": "<|endoftext|>"}


def test_the_records_say_every_byte_was_scored_and_which_document_was_cut():
    tables = {"domain": table([300.0, 350.0, 420.0, 500.0]), "general": table([310.0, 340.0, 400.0, 520.0])}
    records = validation_records(tables, {"domain": marked(cut=5), "general": marked()})
    assert all(r["first_token"] == "scored" for r in records)
    assert [r.get("cut_token_bytes") for r in records] == [None, None, None, 5] + [None] * 4
    assert "first_token" not in validation_records(tables)[0]  # no record of the text (SFT): no mark


def test_whole_documents_scored_to_every_byte_pair_only_on_equal_bytes():
    def item(nbytes: int, tokens: int, cut: int = 0) -> dict:
        found = {"id": "domain/0", "split": "domain", "tokens": tokens, "bytes": nbytes, "first_token": "scored"}
        return {**found, "cut_token_bytes": cut} if cut else found

    # another tokenizer (other token counts): one byte is other text; before, 16 bytes passed as the same
    assert difference(item(300, 60), item(299, 50)) == ("bytes", 300, 299)
    assert difference(item(300, 60), item(300, 50)) is None
    # the document the byte budget cut: within the cut token, and not beyond it
    assert difference(item(300, 60, cut=4), item(303, 50, cut=2)) is None
    assert difference(item(300, 60, cut=4), item(304, 50, cut=2)) == ("bytes", 300, 304)


def test_a_run_that_scored_every_byte_is_not_paired_with_one_from_before(tmp_path):
    import json

    old = train_folder(tmp_path / "old", [300.0, 350.0, 420.0, 500.0])
    new = train_folder(tmp_path / "new", [290.0, 345.0, 410.0, 480.0])
    other = train_folder(tmp_path / "other", [280.0, 340.0, 400.0, 470.0])
    for folder in (new, other):
        manifest = json.loads((folder / "manifest.json").read_text())
        for record in manifest["data"]["val_text"].values():
            record.update(first_token="scored", first_token_context="<|endoftext|>")
        (folder / "manifest.json").write_text(json.dumps(manifest))
    [row] = paired_rows([("old", old), ("new", new)])
    assert (
        row["verdict"] == "not paired"
        and "scored by another rule: domain first_token None vs 'scored'" in (row["reason"])
    )
    assert any(r["metric"] == "val/domain/bpb" and r["n"] == 4 for r in paired_rows([("new", new), ("other", other)]))
