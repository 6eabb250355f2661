"""Hugging Face datasets as sources (`format: hf`): DAPT through the token cache, SFT, passages and
evaluation files, from local parquet folders, save_to_disk folders and a hub id in a fixture cache."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from helpers.models import tiny_llama

from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.sources import read_source
from chipadapt.errors import ChipadaptError

TEXTS = [f"module m{i}(input clk, output reg q); always @(posedge clk) q <= ~q; endmodule // {i}" for i in range(12)]
SNAPSHOT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(autouse=True)
def datasets_offline_in_tmp(tmp_path, monkeypatch):
    """datasets' arrow cache in the test's folder; the hub offline."""
    import datasets
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def parquet_folder(folder, columns: dict, split="train"):
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from chipadapt.models.hf_folder import load_tokenizer

    folder = tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=1, max_position_embeddings=1024)
    return load_tokenizer(folder)


def test_dapt_source_from_a_parquet_folder_tokenizes_like_jsonl_and_streams_the_same(tmp_path, tokenizer):
    from chipadapt.data.token_cache import tokenize_source

    folder = parquet_folder(tmp_path / "corpus", {"text": TEXTS, "id": [f"d{i}" for i in range(len(TEXTS))]})
    jsonl = write_jsonl(tmp_path / "corpus.jsonl", [{"text": t, "id": f"d{i}"} for i, t in enumerate(TEXTS)])
    cache = tmp_path / "tokens"
    from_jsonl = tokenize_source(SourceSpec(path=str(jsonl)), "data.sources.j", tokenizer, cache)
    from_hf = tokenize_source(SourceSpec(path=str(folder), format="hf"), "data.sources.h", tokenizer, cache)
    streamed = tokenize_source(
        SourceSpec(path=str(folder), format="hf", streaming=True), "data.sources.s", tokenizer, cache
    )
    for source in (from_hf, streamed):
        assert source.built and source.doc_ids == from_jsonl.doc_ids
        assert (source.tokens[:] == from_jsonl.tokens[:]).all() and (source.offsets == from_jsonl.offsets).all()
    again = tokenize_source(SourceSpec(path=str(folder), format="hf"), "data.sources.h", tokenizer, cache)
    assert not again.built and again.key == from_hf.key  # the dataset's fingerprint keys the cache
    parquet_folder(tmp_path / "corpus", {"text": TEXTS[:5], "id": [f"d{i}" for i in range(5)]})
    changed = tokenize_source(SourceSpec(path=str(folder), format="hf"), "data.sources.h", tokenizer, cache)
    assert changed.built and changed.num_docs == 5


def test_hub_id_from_a_fixture_cache_offline_and_a_save_to_disk_folder(tmp_path):
    import datasets

    repo = tmp_path / "hub" / "datasets--chip-org--rtl-corpus"
    parquet_folder(repo / "snapshots" / SNAPSHOT, {"content": TEXTS}, split="train")
    parquet_folder(repo / "snapshots" / SNAPSHOT, {"content": TEXTS[:3]}, split="test")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    docs = read_source(
        SourceSpec(path="chip-org/rtl-corpus", format="hf", split="test", text_key="content"), "data.sources.hub"
    )
    assert [d.text for d in docs] == TEXTS[:3] and docs[0].doc_id == "test:0"

    saved = tmp_path / "saved"
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": TEXTS[:4]})}).save_to_disk(str(saved))
    assert len(read_source(SourceSpec(path=str(saved), format="hf", split="validation"), "k")) == 4
    with pytest.raises(ChipadaptError, match=r"k.split: 'train' is not in"):
        read_source(SourceSpec(path=str(saved), format="hf"), "k")


def test_missing_dataset_and_column_are_one_line_errors(tmp_path):
    with pytest.raises(ChipadaptError) as err:
        read_source(SourceSpec(path="nobody/nothing", format="hf"), "data.sources.x")
    assert str(err.value).startswith("data.sources.x.path: nobody/nothing could not be opened") and "\n" not in str(
        err.value
    )
    folder = parquet_folder(tmp_path / "c", {"body": TEXTS})
    with pytest.raises(ChipadaptError, match=r"no string field 'text' \(columns: body\); set data.sources.x.text_key"):
        read_source(SourceSpec(path=str(folder), format="hf"), "data.sources.x")


def test_sft_source_from_datasets_with_messages_or_prompt_completion(tmp_path):
    from chipadapt.data.conversations import read_conversations

    chat = parquet_folder(
        tmp_path / "chat",
        {
            "conversation": [
                [
                    {"role": "user", "content": "What is a latch?"},
                    {"role": "assistant", "content": "A level-sensitive storage element."},
                ],
                [{"role": "user", "content": "Only a question"}],
            ]
        },
    )
    convs = read_conversations("chat", {"path": str(chat), "format": "hf", "messages_key": "conversation"})
    assert len(convs) == 1 and convs[0].messages[1] == {
        "role": "assistant",
        "content": "A level-sensitive storage element.",
    }
    pairs = parquet_folder(tmp_path / "pairs", {"instruction": ["Write a NAND"], "output": ["assign y = ~(a & b);"]})
    convs = read_conversations(
        "pairs",
        {
            "path": str(pairs),
            "format": "hf",
            "prompt_key": "instruction",
            "completion_key": "output",
            "streaming": True,
        },
    )
    assert [m["role"] for m in convs[0].messages] == ["user", "assistant"] and convs[0].id == "pairs:0"


def test_passages_and_evaluation_files_read_datasets(tmp_path):
    import datasets

    from chipadapt.eval.tasks.mcq import read_mcq
    from chipadapt.retrieval.passages import build_passages, read_passages

    docs = parquet_folder(
        tmp_path / "docs",
        {
            "text": ["# CTS\n\nClock tree synthesis balances skew.", "# PDN\n\npdngen builds the grid."],
            "path": ["cts.md", "pdn.md"],
        },
    )
    passages = build_passages({"docs": {"path": str(docs), "format": "hf"}}, 512, 20, 0)
    assert [p.id for p in passages] == ["docs:cts.md#0", "docs:pdn.md#0"]

    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", "two"]}), tmp_path / "passages.parquet")
    assert [p.text for p in read_passages(tmp_path / "passages.parquet")] == ["one", "two"]

    mmlu = tmp_path / "mmlu"  # cais/mmlu's columns
    datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_dict(
                {"question": ["2+2?"], "subject": ["math"], "choices": [["3", "4", "5", "6"]], "answer": [1]}
            )
        }
    ).save_to_disk(str(mmlu))
    rows = read_mcq(f"hf:{mmlu}:test", "eval.mcq.path")
    assert rows == [{"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}]
    # Without a split in the path, "train" is looked for: the error says how to name another.
    with pytest.raises(ChipadaptError) as err:
        read_mcq(str(mmlu), "eval.mcq.path")
    assert f"split 'train' is not in {mmlu} (splits: test); pick one as hf:{mmlu}:SPLIT" in str(err.value)

    from omegaconf import OmegaConf

    from chipadapt.eval.tasks.perplexity import PerplexityTask

    wiki = parquet_folder(tmp_path / "wiki", {"page": TEXTS[:2]}, split="test")  # a perplexity split, as wikitext ships
    splits = OmegaConf.create({"general": {"path": str(wiki), "format": "hf", "split": "test", "text_key": "page"}})
    assert [d.text for d in PerplexityTask(splits, 128, None, None, None, None).documents("general")] == TEXTS[:2]


def test_dapt_trains_on_a_blend_with_a_dataset_source(tmp_path, tiny_overrides):
    from conftest import compose, read_manifest

    from chipadapt.pipeline import train

    folder = parquet_folder(tmp_path / "corpus", {"text": TEXTS * 4})
    cfg = compose(
        [
            *tiny_overrides,
            "trainer.max_steps=2",
            f"+data.sources.rtl_hf.path={folder}",
            "+data.sources.rtl_hf.format=hf",
        ],
        tmp_path / "run",
    )
    assert train(cfg)["global_step"] == 2
    assert read_manifest(tmp_path / "run")["status"] == "completed"
    entries = [json.loads(m.read_text()) for m in (Path(os.environ["CHIPADAPT_CACHE"]) / "tokens").glob("*/meta.json")]
    assert any(e.get("dataset") and e["num_docs"] == len(TEXTS) * 4 for e in entries)
