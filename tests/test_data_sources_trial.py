"""Data sources as a user trial (trial D) brought them: curation's shard folders, datasets saved to
disk, `suffixes: .sv`, binary files and links in folders, data replaced under a resumed run, split and
subset where they cannot apply, blank texts, lone surrogates, dropped sources and the tokenizer."""

import json
import logging

import pytest
import torch
from conftest import TINY_FAST, compose, write_jsonl

from chipadapt.data.source_spec import SourceSpec, source_files, source_spec
from chipadapt.data.sources import read_source
from chipadapt.errors import ChipadaptError

TEXTS = [f"module m{i}(input clk); endmodule // {i}" for i in range(6)]


@pytest.fixture(autouse=True)
def datasets_offline_in_tmp(tmp_path, monkeypatch):
    """datasets' arrow cache in the test's folder; the hub offline."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tokenizer():
    from chipadapt.models.tiny import train_tiny_tokenizer

    return train_tiny_tokenizer(["module fifo; wire full; endmodule", "set_clock_uncertainty 0.25"] * 20, 300)


def shards(folder, per_shard=2):
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(TEXTS), per_shard):
        records = [{"text": t, "path": f"rtl/m{start + i}.v"} for i, t in enumerate(TEXTS[start : start + per_shard])]
        write_jsonl(folder / f"part-{start // per_shard:05d}.jsonl", records)
    return folder


# S1 -------------------------------------------------------------------------------------------------
def test_a_folder_of_jsonl_shards_is_read_as_records(tmp_path):
    folder = shards(tmp_path / "corpus" / "handwritten")
    docs = read_source(SourceSpec(path=str(folder)), "data.sources.hw")
    assert [d.text for d in docs] == TEXTS and docs[0].doc_id == "rtl/m0.v"
    # Without ids of their own, records are named by their shard and line.
    (folder / "part-00009.jsonl").write_text('{"text": "module z; endmodule"}\n')
    assert read_source(SourceSpec(path=str(folder)), "k")[-1].doc_id == "part-00009.jsonl:1"


def test_curations_corpus_folder_is_read_as_its_shards_without_its_report(tmp_path):
    from chipadapt.io.outputs import write_marker

    corpus = tmp_path / "corpus"
    shards(corpus / "handwritten")
    (corpus / "curation_report.json").write_text('{"files_seen": 6}')
    write_marker(corpus, "curate")
    assert [d.text for d in read_source(SourceSpec(path=str(corpus)), "k")] == TEXTS


def test_a_mixed_folder_reads_files_whole_and_says_so_unless_format_jsonl(tmp_path, caplog):
    folder = shards(tmp_path / "mixed")
    (folder / "notes.md").write_text("# notes\n")
    with caplog.at_level(logging.WARNING):
        docs = read_source(SourceSpec(path=str(folder)), "data.sources.m")
    assert len(docs) == 4 and "3 .jsonl files read as one document each" in caplog.text
    assert [d.text for d in read_source(SourceSpec(path=str(folder), format="jsonl"), "k")] == TEXTS


# S2 -------------------------------------------------------------------------------------------------
def test_a_save_to_disk_folder_is_a_dataset_without_format_hf(tmp_path):
    import datasets

    saved = tmp_path / "disk"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": TEXTS})}).save_to_disk(str(saved))
    docs = read_source(SourceSpec(path=str(saved)), "data.sources.mine")
    assert [d.text for d in docs] == TEXTS and docs[0].doc_id == "train:0"
    assert source_files(SourceSpec(path=str(saved)), "k") == []  # keyed by the dataset's fingerprint


# S5 -------------------------------------------------------------------------------------------------
def test_suffixes_as_one_string_is_one_ending_and_malformed_endings_are_refused(tmp_path):
    for name in ("alu.v", "fifo.sv", "top.sv"):
        (tmp_path / name).write_text(f"// {name}\n")
    spec = source_spec({"path": str(tmp_path), "suffixes": ".sv"}, "data.sources.mine")
    assert [d.doc_id for d in read_source(spec, "data.sources.mine")] == ["fifo.sv", "top.sv"]
    for bad in ("sv", ["v"], [".sv", 3], "."):
        with pytest.raises(ChipadaptError, match=r"data\.sources\.mine\.suffixes: .* is not a file ending"):
            source_spec({"path": str(tmp_path), "suffixes": bad}, "data.sources.mine")


# S8 -------------------------------------------------------------------------------------------------
def test_folder_sources_leave_out_nul_files_and_links_to_files_read_already_and_count_them(tmp_path, caplog):
    (tmp_path / "alu.v").write_text("module alu; endmodule\n")
    (tmp_path / "zeros.dat").write_bytes(b"\x00" * 3000)  # valid UTF-8, but binary to curation
    (tmp_path / "alu_link.v").symlink_to("alu.v")
    (tmp_path / "broken.v").symlink_to("nowhere.v")
    outside = tmp_path.parent / f"{tmp_path.name}_outside.v"
    outside.write_text("module far; endmodule\n")
    (tmp_path / "far.v").symlink_to(outside)  # a link to a file the folder does not hold is read
    with caplog.at_level(logging.WARNING):
        docs = read_source(SourceSpec(path=str(tmp_path)), "data.sources.mine")
    assert [d.doc_id for d in docs] == ["alu.v", "far.v"]
    for told in ("1 binary file left out", "1 symbolic link left out: its file is read", "1 broken symbolic link left"):
        assert told in caplog.text


# S9 -------------------------------------------------------------------------------------------------
def test_a_resume_on_data_replaced_at_the_same_path_stops_naming_the_source(tmp_path):
    from chipadapt.stages.resume_settings import CHECKPOINT_KEY, check_resume_settings, trajectory_settings

    data = write_jsonl(tmp_path / "res.jsonl", [{"text": t} for t in TEXTS])
    cfg = compose([*TINY_FAST, f"+data.sources.mine.path={data}"], tmp_path / "run")
    ckpt = tmp_path / "last.ckpt"
    torch.save({CHECKPOINT_KEY: trajectory_settings(cfg), "global_step": 2}, ckpt)
    check_resume_settings(ckpt, cfg)  # the same data resumes
    write_jsonl(data, [{"text": t} for t in TEXTS[:3]])
    with pytest.raises(ChipadaptError, match=r"other data: data\.sources\.mine \(.*res\.jsonl\) changed since"):
        check_resume_settings(ckpt, cfg)
    # A checkpoint from before contents were recorded is compared on its settings alone.
    old = {k: v for k, v in trajectory_settings(cfg).items() if not k.endswith(".content")}
    torch.save({CHECKPOINT_KEY: old, "global_step": 2}, ckpt)
    check_resume_settings(ckpt, cfg)


# S11 ------------------------------------------------------------------------------------------------
def test_split_and_subset_are_refused_where_they_cannot_apply(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.table({"content": TEXTS}), parquet)
    spec = SourceSpec(path=str(parquet), format="hf", text_key="content", split="test")
    with pytest.raises(ChipadaptError, match=r"data\.sources\.mine\.split: 'test' does not apply to .*a single file"):
        read_source(spec, "data.sources.mine")
    assert len(read_source(SourceSpec(path=str(parquet), text_key="content"), "k")) == len(TEXTS)
    saved = tmp_path / "disk"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": TEXTS})}).save_to_disk(str(saved))
    with pytest.raises(ChipadaptError, match=r"data\.sources\.mine\.subset: 'foo' does not apply .*save_to_disk"):
        read_source(SourceSpec(path=str(saved), subset="foo"), "data.sources.mine")
    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"text": "x"}])
    with pytest.raises(ChipadaptError, match=r"data\.sources\.mine\.subset: applies to Hugging Face datasets only"):
        read_source(SourceSpec(path=str(jsonl), subset="foo"), "data.sources.mine")


# S14, M7, M8 ----------------------------------------------------------------------------------------
def test_blank_texts_are_counted_and_told(tmp_path, tokenizer, caplog):
    from chipadapt.data.token_cache import tokenize_source

    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "module a;"}, {"text": "  \n"}, {"text": ""}, {"text": "b"}])
    with caplog.at_level(logging.WARNING):
        assert len(read_source(SourceSpec(path=str(path)), "data.sources.c")) == 2
    assert "data.sources.c" in caplog.text and "2 texts left out: empty or whitespace only" in caplog.text
    built = tokenize_source(SourceSpec(path=str(path)), "data.sources.c", tokenizer, tmp_path / "cache")
    assert json.loads((tmp_path / "cache" / built.key / "meta.json").read_text())["skipped"] == {"blank": 2}
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # told again by a run that opens the cached entry
        assert not tokenize_source(SourceSpec(path=str(path)), "data.sources.c", tokenizer, tmp_path / "cache").built
    assert "2 texts left out: empty or whitespace only" in caplog.text


def test_a_filter_that_matches_nothing_says_so(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "a", "lang": "verilog"}, {"text": "b", "lang": "tcl"}])
    with pytest.raises(ChipadaptError, match=r"data\.sources\.c\.where: \{'lang': 'python'\} matched none of the 2"):
        read_source(SourceSpec(path=str(path), where={"lang": "python"}), "data.sources.c")


def test_a_null_text_in_a_dataset_row_is_named_by_its_row_from_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.table({"content": ["a", "b", "c", None]}), parquet)
    with pytest.raises(ChipadaptError) as err:
        read_source(SourceSpec(path=str(parquet), text_key="content"), "data.sources.mine")
    assert "row 4 of" in str(err.value) and "'content' is null, not text" in str(err.value)
    assert "set data.sources.mine.text_key" not in str(err.value)


# C3 -------------------------------------------------------------------------------------------------
def test_a_lone_surrogate_escape_is_an_error_naming_file_and_line(tmp_path, tokenizer):
    from chipadapt.data.token_cache import tokenize_source

    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "pair \\ud83d\\ude00 fine"}\n{"text": "bad surrogate \\ud800 here"}\n')
    with pytest.raises(ChipadaptError, match=r"c\.jsonl:2: the escape \\ud800 is half of a UTF-16 surrogate pair"):
        tokenize_source(SourceSpec(path=str(path)), "data.sources.c", tokenizer, tmp_path / "cache")
    path.write_text('{"text": "pair \\ud83d\\ude00 fine"}\n')
    assert read_source(SourceSpec(path=str(path)), "k")[0].text == "pair \U0001f600 fine"


# C5 -------------------------------------------------------------------------------------------------
def test_the_augmented_tokenizer_leaves_out_sources_set_to_null(tmp_path):
    from hydra.utils import instantiate

    cfg = compose([*TINY_FAST, "tokenizer=augmented_small", "data.sources.docs=null"], tmp_path / "run")
    adapt = instantiate(cfg.tokenizer.adapt)
    assert "docs" not in adapt.domain and {"bugs", "rtl", "scripts"} <= set(adapt.domain)


# E --------------------------------------------------------------------------------------------------
def test_a_failed_tokenization_leaves_nothing_in_the_cache_and_max_bytes_keys_it(tmp_path, tokenizer):
    from chipadapt.data.token_cache import tokenize_source

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a"}, {"body": "no text"}])
    with pytest.raises(ChipadaptError, match=r"bad\.jsonl:2"):
        tokenize_source(SourceSpec(path=str(bad)), "k", tokenizer, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")] == []
    big = write_jsonl(tmp_path / "big.jsonl", [{"text": "x" * 2000}])
    tokenize_source(SourceSpec(path=str(big)), "k", tokenizer, tmp_path / "cache")
    with pytest.raises(ChipadaptError, match=r"big\.jsonl:1: line longer than 1,000 bytes"):
        tokenize_source(SourceSpec(path=str(big), max_bytes=1000), "k", tokenizer, tmp_path / "cache")


def test_a_folder_sources_content_is_what_its_reader_selects(tmp_path):
    """A `git fetch` or a build inside a source repository between preemption and requeue is no change
    of training data; an edited selected file is."""
    from chipadapt.stages.resume_settings import source_content

    repo = tmp_path / "repo"
    (repo / "rtl").mkdir(parents=True)
    (repo / "rtl" / "alu.sv").write_text("module alu; endmodule\n")
    source = {"path": str(repo), "suffixes": [".sv"]}
    before = source_content(source, "data.sources.rtl", repo)
    (repo / ".git").mkdir()
    (repo / ".git" / "index").write_bytes(b"changed by git status")
    (repo / "build.log").write_text("a build ran here\n")
    assert source_content(source, "data.sources.rtl", repo) == before
    (repo / "rtl" / "alu.sv").write_text("module alu(input a); endmodule\n")
    assert source_content(source, "data.sources.rtl", repo) != before
