"""A held-out text is never trained on, whatever id its copy carries. A trial's JSONL gave 20 texts
twice (no ids): lines 13 and 17 were held out while their copies on lines 33 and 37 trained; the same
20 conversations as a chat file and as a dataset (two sources) trained 6 of the 7 held out through the
other source. Copies of a validation text are now left out of training and counted
(`val_duplicates_dropped`); which documents are held out is unchanged (still by id)."""

import logging

import numpy as np
import pytest
from conftest import write_jsonl
from omegaconf import OmegaConf

from chipadapt.data.conversations import Conversation
from chipadapt.data.holdout import held_out, held_out_mask

TEXTS = [f"module m{i}(input clk, output q{i}); assign q{i} = clk ^ {i}; endmodule" for i in range(20)]


@pytest.fixture(scope="module")
def tokenizer():
    from chipadapt.models.tiny import train_tiny_tokenizer

    return train_tiny_tokenizer(TEXTS * 3, 300)


def dapt_data(tmp_path, tokenizer, sources: dict, val_sources: dict | None = None):
    from chipadapt.data.datamodule import PretrainDataModule

    data = OmegaConf.create(
        {
            "sources": sources,
            "val_sources": val_sources,
            "seq_len": 16,
            "micro_batch_size": 1,
            "num_workers": 0,
            "val_fraction": 0.15,
            "val_max_bytes": 1 << 20,
        }
    )
    module = PretrainDataModule(data, tokenizer, "<|endoftext|>", str(tmp_path / "tokens"), seed=0)
    module.setup()
    return module


def trained_texts(module, tokenizer) -> list[str]:
    sources = module.train_set.sources
    return [tokenizer.decode(sources[s].doc_tokens(d).tolist()) for s, d in module.train_set.order]


def test_a_jsonl_given_twice_trains_on_no_copy_of_a_held_out_line(tmp_path, tokenizer, caplog):
    path = write_jsonl(tmp_path / "twice.jsonl", [{"text": t} for t in TEXTS + TEXTS])
    ids = [f"twice.jsonl:{line}" for line in range(1, 41)]
    mask = held_out_mask(ids, 0.15)
    held_texts = {(TEXTS + TEXTS)[i] for i in np.flatnonzero(mask)}
    with caplog.at_level(logging.WARNING):
        module = dapt_data(tmp_path, tokenizer, {"gen": {"path": str(path)}})
    trained = trained_texts(module, tokenizer)
    assert held_texts and not held_texts & set(trained)
    copies = sum(((TEXTS + TEXTS)[i] in held_texts) for i in np.flatnonzero(~mask))
    (row,) = module.blend
    assert row.val_duplicates_dropped == copies > 0
    assert (row.train_docs, row.val_docs) == (40 - mask.sum() - copies, mask.sum())  # which are held out: by id
    assert module.stats["val_duplicates_dropped"] == copies
    assert f"left out of training {copies} documents whose text is a validation document's" in caplog.text


def test_a_copy_in_another_source_or_a_validation_source_is_left_out_too(tmp_path, tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": t, "path": f"rtl/m{i}.v"} for i, t in enumerate(TEXTS)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in TEXTS])  # the same texts, other ids
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": TEXTS[0]}, {"text": "prose never trained"}])
    mask = held_out_mask([f"rtl/m{i}.v" for i in range(20)], 0.15)
    module = dapt_data(
        tmp_path,
        tokenizer,
        {"a": {"path": str(a)}, "b": {"path": str(b), "val_split": None}},
        {"general": {"path": str(general)}},
    )
    validated = {TEXTS[i] for i in np.flatnonzero(mask)} | {TEXTS[0]}
    assert not validated & set(trained_texts(module, tokenizer))
    assert [r.val_duplicates_dropped for r in module.blend] == [int(not mask[0]), len(validated)]


def test_documents_with_ids_keep_their_split_and_train_whole_without_copies(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "ids.jsonl", [{"text": t, "path": f"rtl/m{i}.v"} for i, t in enumerate(TEXTS)])
    module = dapt_data(tmp_path, tokenizer, {"rtl": {"path": str(path)}})
    mask = held_out_mask([f"rtl/m{i}.v" for i in range(20)], 0.15)
    (row,) = module.blend
    assert (row.train_docs, row.val_docs, row.val_duplicates_dropped) == (20 - mask.sum(), mask.sum(), 0)


def test_sft_conversations_given_as_two_sources_train_on_none_held_out(tmp_path, caplog):
    from test_sft_inputs_trial import sft_data

    conversations = [
        [{"role": "user", "content": f"What does cell {i} do?"}, {"role": "assistant", "content": f"Cell {i} latches."}]
        for i in range(40)
    ]
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in conversations])
    # The other copy: its text re-spaced, as a re-export may (the same conversation)
    respaced = [[{**turn, "content": turn["content"] + "\n"} for turn in m] for m in conversations]
    copy = write_jsonl(tmp_path / "copy.jsonl", [{"messages": m} for m in respaced])
    data = sft_data(
        tmp_path,
        [
            "data.sources.kestrel_qa=null",
            "data.val_sources=null",
            "data.val_fraction=0.2",
            f"+data.sources.chat.path={chat}",
            f"+data.sources.copy.path={copy}",
        ],
    )
    with caplog.at_level(logging.WARNING):
        data.setup()
    held = {i for i in range(40) if held_out(f"chat:{i + 1}", 0.2)} | {
        i for i in range(40) if held_out(f"copy:{i + 1}", 0.2)
    }
    assert held
    rows = {row["name"]: row for row in data.stats["sources"]}
    assert rows["chat"]["train"] + rows["copy"]["train"] == 2 * (40 - len(held))
    dropped = rows["chat"]["val_duplicates_dropped"] + rows["copy"]["val_duplicates_dropped"]
    assert dropped == 2 * len(held) - rows["chat"]["val"] - rows["copy"]["val"] > 0
    assert "whose content is a validation conversation's under another id" in caplog.text
    trained = {tuple(ids) for ids, _ in data.train_samples}
    for i in held:
        for messages in (conversations[i], respaced[i]):
            assert tuple(data.encode(Conversation("x", messages))[0][0]) not in trained
