"""Training validation leaves out the space a Llama-2-style tokenizer prepends to each document (its dummy
prefix), as evaluate.py's perplexity does: a packed document counts the bytes of its text, but for one whose
text starts with a space, which counts one byte short (validation has only its ids). Its results and DAPT
checkpoints carry the later byte-count mark, so those from before are told apart; a byte-level tokenizer
counts as before and carries no mark (models/token_bytes.py, modules/val_items.py)."""

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from chipadapt.data.datamodule import PretrainDataModule
from chipadapt.data.packing import PackedSequences, collate_causal_lm
from chipadapt.data.token_cache import TokenizedSource
from chipadapt.models.token_bytes import byte_count_rule
from chipadapt.modules.causal_lm import CausalLMModule
from chipadapt.modules.val_items import BYTES, batch_records, item_table
from chipadapt.stages.common import StartingMetrics, validation_settings

TEXTS = ["The board shipped 2000 units at 100 MHz.", "héllo wörld ✓", "x", "module top(input clk);\n  assign x = y;\n"]
DAPT = {"datamodule": {"_target_": "chipadapt.data.datamodule.PretrainDataModule"}}


@pytest.fixture(scope="module")
def llama2_folder(tmp_path_factory):
    """A tiny random Llama on a Llama-2-style SentencePiece tokenizer (legacy=False: Metaspace prepends `▁`
    to a text that does not start with a space)."""
    from helpers.tokenizer_material import build_llama2_style

    sentencepiece = pytest.importorskip("sentencepiece")
    fast, _ = build_llama2_style(tmp_path_factory.mktemp("sp"), sentencepiece)
    return fast


@pytest.fixture(scope="module")
def byte_level_folder(tmp_path_factory):
    from helpers.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("tiny"))


def module_for(folder) -> CausalLMModule:
    return CausalLMModule(folder, "float32", "sdpa", False, OmegaConf.create({}), val_split_names=["domain"])


def packed(module: CausalLMModule, texts: list[str], seq_len: int) -> PackedSequences:
    """`texts` as DAPT's validation packs them: each after the separator, every token predicted."""
    tokenizer = module_tokenizer(module)
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    offsets = np.concatenate([[0], np.cumsum([len(i) for i in ids])]).astype(np.int64)
    tokens = np.concatenate([np.asarray(i, dtype=np.uint32) for i in ids])
    source = TokenizedSource(tokens, offsets, [f"d{i}" for i in range(len(texts))], "k", True, 0.0)
    order = np.array([[0, d] for d in range(len(texts))])
    separator = tokenizer.eos_token_id
    return PackedSequences([source], order, seq_len, separator, with_items=True, start_token=separator)


def module_tokenizer(module: CausalLMModule):
    from chipadapt.models.hf_folder import load_tokenizer

    return load_tokenizer(module.model_folder)


def validated_bytes(
    module: CausalLMModule, texts: list[str], seq_len: int, batch_size: int = 2, datamodule=PretrainDataModule
) -> list[int]:
    """Bytes per document of one validation of `texts` through the module's validation step, under a trainer
    whose datamodule is `datamodule` (DAPT's: packed documents)."""
    module.trainer = SimpleNamespace(datamodule=datamodule)  # all validation_step reads of its trainer
    rows = packed(module, texts, seq_len)
    pad = module_tokenizer(module).eos_token_id
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate_causal_lm([rows[i] for i in range(start, min(start + batch_size, len(rows)))], pad)
            module.validation_step(batch, start // batch_size)
    records = module.val_records["domain"].compute().double().numpy()
    module.val_records["domain"].reset()
    return item_table(records)[:, BYTES].astype(int).tolist()


def piece_bytes(module: CausalLMModule, texts: list[str], seq_len: int) -> list[int]:
    """Bytes per document as validation summed them before: every token's piece bytes, prefix included."""
    rows = packed(module, texts, seq_len)
    records = []
    for i in range(len(rows)):
        batch = collate_causal_lm([rows[i]], 0)
        labels = batch["labels"][:, 1:]
        records.append(batch_records(batch, torch.zeros(labels.shape), labels, module.token_bytes, torch.float64))
    return item_table(torch.cat(records).numpy())[:, BYTES].astype(int).tolist()


@pytest.mark.parametrize("seq_len", [2, 3, 7, 64])
def test_a_packed_document_counts_the_bytes_of_its_text_not_the_prepended_space(llama2_folder, seq_len):
    module = module_for(llama2_folder)
    assert module.added_space == 1
    text_bytes = [len(t.encode("utf-8")) for t in TEXTS]
    # The separator after each document is predicted with it, and has no bytes.
    assert validated_bytes(module, TEXTS, seq_len) == text_bytes
    assert piece_bytes(module, TEXTS, seq_len) == [n + 1 for n in text_bytes]  # before: one byte a document more


def test_validation_counts_a_document_as_evaluate_perplexity_does_but_one_that_starts_with_a_space(
    tmp_path, llama2_folder
):
    from conftest import write_jsonl

    from chipadapt.eval.tasks.perplexity import PerplexityTask
    from chipadapt.models.hf_folder import load_causal_lm

    module = module_for(llama2_folder)
    # The tokenizer prepends nothing to a text that starts with a space, and gives the ids it gives that text
    # without its space: validation, which has only the ids, takes a byte off it that was its own.
    texts = [*TEXTS, " leading space", "  two leading"]
    assert [t.startswith(" ") for t in texts] == [False] * len(TEXTS) + [True, True]
    assert module_tokenizer(module)(" leading space").input_ids == module_tokenizer(module)("leading space").input_ids
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "id": f"d{i}"} for i, t in enumerate(texts)])
    task = PerplexityTask(OmegaConf.create({"docs": {"path": str(corpus)}}), 8, None, None, None, None)
    results = task.run(load_causal_lm(llama2_folder, "float32", "sdpa").eval(), module_tokenizer(module))
    perplexity_bytes = [item["bytes"] for item in task.items]
    assert perplexity_bytes == [len(t.encode("utf-8")) for t in texts]
    # The known gap, one byte of each space-leading document and no other (README: data.val_fraction).
    gap = [p - v for p, v in zip(perplexity_bytes, validated_bytes(module, texts, 16))]
    assert gap == [0] * len(TEXTS) + [1, 1]
    assert results["byte_count"] == "piece_utf8_no_added_space"


class _NumberedRows(L.LightningDataModule):
    """A datamodule whose rows number their items (`item_index`) but that does not say it packs documents."""


def test_only_a_datamodule_that_packs_documents_has_the_space_taken_off_and_the_mark_that_says_so(llama2_folder):
    from transformers import AutoTokenizer

    module, tokenizer = module_for(llama2_folder), AutoTokenizer.from_pretrained(llama2_folder)
    text_bytes = [len(t.encode("utf-8")) for t in TEXTS]
    # The same batches, item_index and all: the bytes follow the datamodule's word, as the mark does.
    assert validated_bytes(module, TEXTS, 7) == text_bytes
    assert validated_bytes(module, TEXTS, 7, datamodule=_NumberedRows()) == piece_bytes(module, TEXTS, 7)
    assert validated_bytes(module, TEXTS, 7, datamodule=None) == piece_bytes(module, TEXTS, 7)  # validate(dataloaders)
    data = {"val_fraction": 0.1, "val_max_bytes": 8192}

    def mark(target: str) -> str:
        stage = {"datamodule": {"_target_": target}}
        return validation_settings(OmegaConf.create({"data": data, "trainer": {}, "stage": stage}), tokenizer)[
            "byte_count"
        ]

    assert mark(DAPT["datamodule"]["_target_"]) == "piece_utf8_no_added_space"
    assert mark(f"{__name__}._NumberedRows") == "piece_utf8"
    assert mark("chipadapt.data.sft_datamodule.SFTDataModule") == "piece_utf8"


def test_a_document_of_no_text_is_not_taken_below_zero(llama2_folder):
    module = module_for(llama2_folder)
    texts = ["first", "", "third"]  # the middle document is its separator alone
    assert validated_bytes(module, texts, 4) == [5, 0, 5]


def test_a_byte_level_tokenizer_counts_as_before_and_carries_no_mark(byte_level_folder):
    module = module_for(byte_level_folder)
    assert module.added_space == 0
    assert validated_bytes(module, TEXTS, 7) == piece_bytes(module, TEXTS, 7)
    assert byte_count_rule(module_tokenizer(module)) is None


def test_a_checkpoint_that_counted_the_prepended_space_drops_its_starting_validation(llama2_folder):
    from transformers import AutoTokenizer

    cfg = OmegaConf.create({"data": {"val_fraction": 0.1, "val_max_bytes": 8192}, "trainer": {}, "stage": DAPT})
    now = validation_settings(cfg, AutoTokenizer.from_pretrained(llama2_folder))
    assert now["byte_count"] == "piece_utf8_no_added_space"
    before = {**now, "byte_count": "piece_utf8"}  # its documents counted one byte more each
    state = {"before": {"domain": {"bpb": 1.2}}, "settings": before, "items": {}, "changes": []}
    resumed = StartingMetrics(now)
    resumed.load_state_dict(state)
    assert resumed.values == {}
    assert resumed._changed_now == {"byte_count": ["piece_utf8", "piece_utf8_no_added_space"]}


def test_a_sentencepiece_tokenizer_that_prepends_nothing_keeps_its_mark():
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    # Gemma's way: `▁` for a space, nothing prepended: its counts are as before, and so is its mark.
    vocab = {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3}
    backend = Tokenizer(models.BPE(vocab, [("▁", "a")], unk_token="<unk>"))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert byte_count_rule(tokenizer) == "piece_utf8"
