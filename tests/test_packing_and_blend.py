import numpy as np
import pytest
import torch

from chipadapt.data.blend import blend_order
from chipadapt.data.holdout import held_out_mask as held_out
from chipadapt.data.packing import PackedSequences, collate_causal_lm
from chipadapt.data.token_cache import TokenizedSource

SEP = 0


def make_source(lengths: list[int], start: int = 1) -> TokenizedSource:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.arange(start, start + offsets[-1], dtype=np.uint32)
    return TokenizedSource(tokens, offsets, [f"d{i}" for i in range(len(lengths))], "k", True, 0.0)


def stream(sources, order) -> list[int]:
    out = []
    for s, d in order:
        out += sources[s].doc_tokens(d).tolist() + [SEP]
    return out


@pytest.mark.parametrize("seq_len", [1, 3, 7, 16, 50])
def test_windows_are_the_separated_stream_cut_into_full_sequences(seq_len):
    sources = [make_source([5, 1, 12, 3]), make_source([20, 2], start=1000)]
    order = np.array([[0, 2], [1, 0], [0, 0], [0, 1], [1, 1], [0, 3]])
    packed = PackedSequences(sources, order, seq_len, SEP)
    expected = stream(sources, order)
    assert len(packed) == len(expected) // seq_len
    got = [t for i in range(len(packed)) for t in packed[i]["input_ids"].tolist()]
    assert got == expected[: len(packed) * seq_len]
    assert packed.packing_efficiency == pytest.approx(len(packed) * seq_len / len(expected))


def test_shuffled_sequences_are_a_permutation_and_partial_tail_only_when_asked():
    sources = [make_source([40, 30, 50])]
    order = np.array([[0, 0], [0, 1], [0, 2]])
    plain = PackedSequences(sources, order, 8, SEP)
    shuffled = PackedSequences(sources, order, 8, SEP, shuffle_seed=3)
    as_set = lambda p: sorted(tuple(p[i]["input_ids"].tolist()) for i in range(len(p)))  # noqa: E731
    assert as_set(plain) == as_set(shuffled)
    assert [shuffled[i]["input_ids"].tolist() for i in range(3)] != [plain[i]["input_ids"].tolist() for i in range(3)]
    tiny = PackedSequences([make_source([3])], np.array([[0, 0]]), 8, SEP, keep_tail=True)
    assert len(tiny) == 1 and tiny[0]["input_ids"].tolist() == [1, 2, 3, SEP]
    assert len(PackedSequences([make_source([3])], np.array([[0, 0]]), 8, SEP)) == 0


@pytest.mark.parametrize("seq_len", [1, 3, 7, 16, 50])
def test_validation_keeps_its_whole_text_at_any_seq_len_and_a_cut_last_document_has_no_separator(seq_len):
    # Validation scores all of its text (the short last window too), so that every seq_len reads the same.
    sources = [make_source([5, 1, 12, 3]), make_source([20, 2], start=1000)]
    order = np.array([[0, 2], [1, 0], [0, 0]])
    packed = PackedSequences(sources, order, seq_len, SEP, keep_tail=True, last_tokens=4)
    expected = stream(sources, order)[:-1][: 13 + 21 + 4]  # the last document: its first 4 tokens, no separator
    assert expected[-4:] == [1, 2, 3, 4]
    got = [t for i in range(len(packed)) for t in packed[i]["input_ids"].tolist()]
    assert got == expected and packed.total_tokens == len(expected)


def test_collate_pads_only_short_sequences_and_masks_their_labels():
    batch = collate_causal_lm([{"input_ids": torch.tensor([5, 6, 7])}, {"input_ids": torch.tensor([8])}], pad_id=2)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_blend_multipliers_repeat_and_subsample_documents_deterministically():
    a, b = make_source([10] * 6), make_source([5] * 4)
    plan = [("a", a, np.arange(6), 2.0), ("b", b, np.arange(4), 0.5)]
    order, rows = blend_order(plan, seed=7)
    counts = np.bincount(order[:, 0])
    assert counts.tolist() == [12, 2]
    assert np.all(np.bincount(order[order[:, 0] == 0, 1]) == 2)  # every doc of a exactly twice
    assert rows[0].blended_tokens == 120 and rows[1].blended_tokens == 10
    assert rows[0].share == pytest.approx(120 / 130)
    again, _ = blend_order(plan, seed=7)
    other, _ = blend_order(plan, seed=8)
    np.testing.assert_array_equal(order, again)
    assert not np.array_equal(order, other)


def test_held_out_documents_depend_on_ids_only_and_keep_one_each_side():
    ids = [f"rtl/file{i}.sv" for i in range(200)]
    mask = held_out(ids, 0.1)
    assert 8 <= mask.sum() <= 35
    np.testing.assert_array_equal(mask, held_out(list(ids), 0.1))
    assert held_out(ids[:2], 0.01).sum() == 1  # at least one held out ...
    assert held_out(ids[:2], 0.99).sum() == 1  # ... and at least one kept
    assert held_out(ids[:1], 0.5).sum() == 0
    assert held_out(ids, 0.0).sum() == 0


def test_a_dapt_source_set_to_null_is_dropped_as_in_the_sft_blend(tmp_path):
    from omegaconf import OmegaConf

    from chipadapt.data.datamodule import PretrainDataModule

    doc = tmp_path / "docs.jsonl"
    doc.write_text('{"text": "a document about timing closure"}\n')
    data = OmegaConf.create({"sources": {"docs": {"path": str(doc)}, "other": None}, "val_sources": {"held": None}})
    module = PretrainDataModule.__new__(PretrainDataModule)  # only the source specs, no tokenizer
    module.data = data
    train, val = module._specs()
    assert list(train) == ["docs"] and val == {}
