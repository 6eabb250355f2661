import pytest
from conftest import write_jsonl

from chipadapt.data.source_spec import SourceSpec, source_files
from chipadapt.data.sources import read_source
from chipadapt.errors import ChipadaptError


def test_jsonl_documents_keep_their_ids_and_skip_blank_text(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"text": "module a; endmodule", "path": "rtl/a.v"}, {"text": "  "}, {"text": "doc"}]
    )
    docs = read_source(SourceSpec(path=str(path)), "data.sources.c")
    assert [d.doc_id for d in docs] == ["rtl/a.v", "c.jsonl:3"]
    assert docs[0].text == "module a; endmodule"


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "broken"\n')
    with pytest.raises(ChipadaptError, match=r"bad\.jsonl:2: malformed JSON"):
        read_source(SourceSpec(path=str(path)), "data.sources.bad")


def test_missing_text_field_is_named(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "x"}])
    with pytest.raises(ChipadaptError, match=r"c\.jsonl:1: no string field 'text'"):
        read_source(SourceSpec(path=str(path)), "data.sources.c")


def test_folder_source_filters_suffixes_hidden_and_binary_files(tmp_path):
    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "a.sv").write_text("module a; endmodule\n")
    (tmp_path / "rtl" / "b.tcl").write_text("puts hi\n")
    (tmp_path / "rtl" / ".hidden.sv").write_text("x\n")
    (tmp_path / "rtl" / "blob.sv").write_bytes(b"\xff\xfe\x00\x81")
    spec = SourceSpec(path=str(tmp_path / "rtl"), suffixes=(".sv",))
    assert [p.name for p in source_files(spec, "k")] == ["a.sv", "blob.sv"]
    assert [d.doc_id for d in read_source(spec, "k")] == ["a.sv"]


def test_empty_and_missing_sources_name_the_config_key(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ChipadaptError, match=r"data\.sources\.e: .* holds no non-empty documents"):
        read_source(SourceSpec(path=str(tmp_path / "empty.jsonl")), "data.sources.e")
    with pytest.raises(ChipadaptError, match=r"data\.sources\.m\.path: .* does not exist"):
        read_source(SourceSpec(path=str(tmp_path / "nope")), "data.sources.m")
