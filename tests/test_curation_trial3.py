"""A new user's own data in curation and tokenization: a Hugging Face dataset given to curation is refused in
one line (it gave its metadata JSON as documents), an empty .jsonl is said to be empty, a broken PDF leaves
no bare library line, and whole documents longer than the model's context tokenize without transformers'
"longer than the specified maximum" warning."""

import logging
from collections import Counter

import pytest
from conftest import CONF
from omegaconf import OmegaConf

from chipadapt.curation.extract import ExtractError, pdf_text
from chipadapt.curation.run import curate
from chipadapt.errors import ChipadaptError

RTL = "module counter(input clk, output reg [3:0] q);\n  always @(posedge clk) q <= q + 1;\nendmodule\n"


def config(inputs):
    cfg = OmegaConf.load(CONF / "data" / "curate" / "sample.yaml")
    cfg.inputs = [str(p) for p in inputs]
    cfg.workers = 1
    return cfg


def _datasets(tmp_path):
    import datasets

    rows = {"content": [RTL, RTL.replace("counter", "timer")], "idx": [0, 1]}
    one = datasets.Dataset.from_dict(rows)
    one.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": one, "validation": one}).save_to_disk(str(tmp_path / "saved_dict"))
    one.to_parquet(str(tmp_path / "rows.parquet"))
    return {"saved": tmp_path / "saved", "saved_dict": tmp_path / "saved_dict", "rows": tmp_path / "rows.parquet"}


def test_a_dataset_given_to_curation_is_refused_naming_it_and_train_py(tmp_path):
    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "counter.v").write_text(RTL)
    for name, path in _datasets(tmp_path).items():
        out = tmp_path / f"out_{name}"
        with pytest.raises(ChipadaptError) as refused:
            curate(config([tmp_path / "rtl", path]), out)
        line = str(refused.value)
        assert line.startswith(f"data.curate.inputs[{name}]: {path} is a Hugging Face dataset")
        assert f"+data.sources.{name}.format=hf" in line and "\n" not in line
        assert not out.exists()  # nothing published


def test_an_empty_jsonl_is_skipped_as_empty_not_as_another_kind(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "counter.v").write_text(RTL)
    (folder / "none.jsonl").write_bytes(b"")
    (folder / "blank.jsonl").write_text("\n  \n")
    (folder / "sim_log.jsonl").write_text('{"event": "start", "time": 0}\n')
    report = curate(config([folder]), tmp_path / "out")
    assert report["skipped"] == {"empty": 2, "jsonl_without_text": 1}
    assert sorted(report["skipped_examples"]["empty"]) == ["blank.jsonl", "none.jsonl"]


def test_a_broken_pdf_logs_nothing_of_its_own(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ExtractError):
        pdf_text(b"%PDF-1.4\n%broken pdf garbage\x00\x01\x02")
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
    assert "EOF marker" not in capfd.readouterr().err
    assert logging.getLogger("pypdf").level == logging.NOTSET  # put back after the call


def _short_context_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["module", "counter", "endmodule", "clk", "[UNK]"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", model_max_length=8)


def test_whole_documents_tokenize_without_the_longer_than_maximum_warning(tmp_path):
    from chipadapt.data.source_spec import SourceSpec
    from chipadapt.data.token_cache import _tokenize

    (tmp_path / "docs.jsonl").write_text('{"text": "' + "module counter clk endmodule " * 50 + '"}\n')
    seen: list[str] = []
    catch = logging.Handler()
    catch.emit = lambda record: seen.append(record.getMessage())
    library = logging.getLogger("transformers")  # transformers' own loggers do not reach the root logger
    library.addHandler(catch)
    try:
        lengths, *_ = _tokenize(
            SourceSpec(path=str(tmp_path / "docs.jsonl")), "data.sources.d", _short_context_tokenizer(), Counter()
        )
    finally:
        library.removeHandler(catch)
    assert lengths == [200]  # the whole document, over the context of 8
    assert not [m for m in seen if "longer than the specified maximum" in m]
