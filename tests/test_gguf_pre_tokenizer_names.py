"""The GGUF conversion's pre-tokenizer table uses llama.cpp's spelling of the names, leaves alone (and
does not warn about) the ones transformers rebuilds, and splits digits for every llama.cpp type that does."""

import logging

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import chipadapt.models.gguf_import as gguf_import


def fast_tokenizer(pre_tokenizer) -> PreTrainedTokenizerFast:
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab, []))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def words(tok, text: str) -> list[str]:
    return [w for w, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]


@pytest.mark.parametrize("name", ["smollm", "command-r", "codeshell", "exaone", "minerva-7b", "starcoder"])
def test_llama_cpp_types_that_split_digits_split_them(monkeypatch, tmp_path, name):
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: name)
    tok = fast_tokenizer(pre_tokenizers.ByteLevel(add_prefix_space=False))
    gguf_import.set_pre_tokenizer(tok, tmp_path / "m.gguf")
    assert words(tok, "x 2024") == ["x", "Ġ", "2", "0", "2", "4"]


def test_llama_cpp_gpt2_name_is_the_plain_byte_level_one(monkeypatch, tmp_path, caplog):
    # llama.cpp writes "gpt-2": a folder that had another pre-tokenizer gets GPT-2's, with no warning.
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: "gpt-2")
    tok = fast_tokenizer(pre_tokenizers.Whitespace())
    with caplog.at_level(logging.WARNING, logger="chipadapt.models.gguf_import"):
        gguf_import.set_pre_tokenizer(tok, tmp_path / "m.gguf")
    assert not caplog.records
    assert words(tok, "x 2024") == ["x", "Ġ2024"]


@pytest.mark.parametrize("name", ["falcon3", "tekken", "qwen35", "gpt-4o", "dbrx", "smaug-bpe", "llama-bpe"])
def test_names_transformers_rebuilds_are_kept_without_a_warning(monkeypatch, tmp_path, caplog, name):
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: name)
    tok = fast_tokenizer(pre_tokenizers.Whitespace())
    before = tok.backend_tokenizer.pre_tokenizer.__getstate__()
    with caplog.at_level(logging.WARNING, logger="chipadapt.models.gguf_import"):
        gguf_import.set_pre_tokenizer(tok, tmp_path / "m.gguf")
    assert tok.backend_tokenizer.pre_tokenizer.__getstate__() == before
    assert not caplog.records


@pytest.mark.parametrize("name", ["command-r", "codeshell", "exaone", "minerva-7b"])
def test_folders_converted_before_a_name_was_mapped_are_converted_again_and_no_other(monkeypatch, tmp_path, name):
    """Version 2 left these names plain byte-level (digits joined): their cached folders must not be
    reused; SmolLM2's (`smollm`), converted the same way, keeps its folder."""
    from chipadapt.models.locate import gguf_folder

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("CHIPADAPT_CACHE", str(tmp_path / "cache"))
    converted = []

    def fake_convert(source, file, dest, key):
        converted.append(dest)
        (dest).mkdir(parents=True)
        (dest / "config.json").write_text("{}")
        return dest

    monkeypatch.setattr(gguf_import, "convert_gguf", fake_convert)
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: "smollm")
    before = gguf_folder(gguf, "model.path")
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: name)
    assert gguf_folder(gguf, "model.path") != before and len(converted) == 2
    # a package's GGUF: the folder name carries the version of its pre-tokenizer name
    package = gguf_import.GgufPackageModel("pytest", "__init__.py", str(tmp_path))
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: "smollm")
    assert package.folder.name.endswith("--v2")  # SmolLM2's folder of version 2: reused, not converted again
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: name)
    assert package.folder.name.endswith("--v2")  # read once per model source: its header is not read again
    assert gguf_import.GgufPackageModel("pytest", "__init__.py", str(tmp_path)).folder.name.endswith("--v3")


def test_a_package_model_reads_its_gguf_header_once(tmp_path, monkeypatch):
    from chipadapt.models import gguf_import

    reads = []
    monkeypatch.setattr(gguf_import, "gguf_pre_tokenizer_name", lambda path: reads.append(path) or "command-r")
    package = gguf_import.GgufPackageModel("pytest", "__init__.py", str(tmp_path))
    assert {package.folder.name for _ in range(5)} == {"pytest--__init__--v3"}
    assert len(reads) == 1  # was one read of the header per look at the folder


@pytest.mark.parametrize("name, version", [("command-r", 3), ("minerva-7b", 3), ("smollm", 2), (None, 2)])
def test_the_reproduction_stamp_carries_the_conversion_version_of_its_gguf(name, version):
    from chipadapt.code_versions import HELDOUT_VERSION, SELECTION_VERSION, code_versions

    # Was conversion 2 for every GGUF: a command-r reproduction's steps from before version 3 counted as done.
    assert code_versions(name) == {"conversion": version, "selection": SELECTION_VERSION, "heldout": HELDOUT_VERSION}
