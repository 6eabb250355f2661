"""Only a tokenizer whose token bytes count otherwise than before the piece rule (a SentencePiece-style
vocabulary) marks its results `byte_count`: a byte-level BPE one (SmolLM2, GPT-2, tiny) counts as it
always did, so its results and checkpoints still pair with earlier ones. The space a Llama-2-style
tokenizer prepends to a text is no byte of the document (models/token_bytes.py)."""

import pytest
import torch
from helpers.sentencepiece_base import sentencepiece_base
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from chipadapt.eval.same_items import same_settings
from chipadapt.models.token_bytes import added_space_bytes, byte_count_rule, token_byte_lengths
from chipadapt.stages.common import StartingMetrics, validation_settings

DAPT = {"datamodule": {"_target_": "chipadapt.data.datamodule.PretrainDataModule"}}
TEXTS = ["The board shipped 2000 units at 100 MHz.", "héllo wörld ✓", " two  spaces\n\nx", "x"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from helpers.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def llama2_style(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sp")
    sentencepiece_base(folder, True)
    return folder


def test_a_byte_level_tokenizer_carries_no_mark_a_sentencepiece_one_does(tiny_folder, llama2_style):
    from chipadapt.models.hf_folder import load_tokenizer

    assert byte_count_rule(load_tokenizer(tiny_folder)) is None
    assert byte_count_rule(AutoTokenizer.from_pretrained(llama2_style)) == "piece_utf8_no_added_space"


def test_a_byte_level_checkpoint_of_before_keeps_its_starting_validation(tiny_folder, llama2_style):
    from chipadapt.models.hf_folder import load_tokenizer

    cfg = OmegaConf.create({"data": {"val_fraction": 0.1, "val_max_bytes": 8192}, "trainer": {}, "stage": DAPT})
    byte_level = validation_settings(cfg, load_tokenizer(tiny_folder))
    assert "byte_count" not in byte_level  # before: byte_count: piece_utf8 for every tokenizer
    # A checkpoint written with the first-token rule and no byte count (its counts were the same).
    state = {"before": {"domain": {"bpb": 1.2}}, "settings": dict(byte_level), "items": {}, "changes": []}
    resumed = StartingMetrics(byte_level)
    resumed.load_state_dict(state)
    assert resumed.values == {"domain": {"bpb": 1.2}}
    pieces = validation_settings(cfg, AutoTokenizer.from_pretrained(llama2_style))
    assert pieces["byte_count"] == "piece_utf8_no_added_space"
    resumed = StartingMetrics(pieces)
    resumed.load_state_dict(state)  # its bytes were counted by decoding pieces alone: dropped
    assert resumed.values == {} and resumed._changed_now == {"byte_count": [None, "piece_utf8_no_added_space"]}


def test_an_sft_checkpoint_keeps_the_earlier_mark_and_its_starting_validation(llama2_style):
    # SFT's (and SteerLM's) validation rows are conversations: nothing was taken off them, so they count as
    # under piece_utf8 and keep that mark; only packed documents (DAPT) have the prepended space left out.
    tokenizer = AutoTokenizer.from_pretrained(llama2_style)
    sft = {"datamodule": {"_target_": "chipadapt.data.sft_datamodule.SFTDataModule"}}
    data = {"val_fraction": 0.1, "val_max_bytes": 8192, "val_max_conversations": 64}
    now = validation_settings(OmegaConf.create({"data": data, "trainer": {}, "stage": sft}), tokenizer)
    assert now["byte_count"] == "piece_utf8" and "first_token" not in now
    # Written under the piece rule before the prepended space was left out of DAPT's documents.
    state = {"before": {"val": {"bpb": 1.2}}, "settings": dict(now), "items": {}, "changes": []}
    resumed = StartingMetrics(now)
    resumed.load_state_dict(state)
    assert resumed.values == {"val": {"bpb": 1.2}} and resumed._changed_now is None
    dapt = validation_settings(OmegaConf.create({"data": data, "trainer": {}, "stage": DAPT}), tokenizer)
    assert dapt["byte_count"] == "piece_utf8_no_added_space"


def test_a_byte_level_perplexity_result_pairs_with_an_earlier_one(tmp_path, tiny_folder):
    from conftest import write_jsonl

    from chipadapt.eval.tasks.perplexity import PerplexityTask
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    model, tokenizer = load_causal_lm(tiny_folder, "float32", "sdpa").eval(), load_tokenizer(tiny_folder)
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "id": f"d{i}"} for i, t in enumerate(TEXTS)])
    task = PerplexityTask(OmegaConf.create({"docs": {"path": str(corpus)}}), 8, None, None, None, None)
    results = task.run(model, tokenizer)
    assert "byte_count" not in results
    earlier = {"first_token": "scored"}  # a result of b455399's parent: scored first tokens, no byte count
    assert same_settings("perplexity", "earlier", "now", earlier, results) == []


def test_the_dummy_prefix_space_is_no_byte_of_the_document(tmp_path, llama2_style):
    from conftest import write_jsonl
    from transformers import LlamaConfig, LlamaForCausalLM

    from chipadapt.eval.tasks.perplexity import PerplexityTask

    tokenizer = AutoTokenizer.from_pretrained(llama2_style)
    lengths = token_byte_lengths(tokenizer, len(tokenizer))
    # legacy=False: Metaspace prepends `▁` to a text that does not start with a space, to no other.
    assert added_space_bytes(tokenizer, lengths) == (1, 0)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    model = LlamaForCausalLM(config).eval()
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "id": f"d{i}"} for i, t in enumerate(TEXTS)])
    task = PerplexityTask(OmegaConf.create({"docs": {"path": str(corpus)}}), 8, None, None, None, None)
    results = task.run(model, tokenizer)
    # Before: 41, 18, 15 and 2 bytes: one more than the text wherever it did not start with a space.
    assert [i["bytes"] for i in task.items] == [len(t.encode()) for t in TEXTS]
    assert results["byte_count"] == "piece_utf8_no_added_space"


def test_a_tokenizer_that_prepends_before_any_text_has_the_space_taken_off_every_document():
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    # Llama-2's legacy fast tokenizer: a Prepend normalizer, `▁` before every text, a space or not.
    vocab = {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3}
    backend = Tokenizer(models.BPE(vocab, [("▁", "a")], unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    assert added_space_bytes(tokenizer, token_byte_lengths(tokenizer, len(tokenizer))) == (1, 1)
