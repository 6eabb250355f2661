"""io/built_from.py: a built file is reused only while its record matches its settings, its inputs and
its own content; a build cut off between the record and the file is built again; a file without a
record is never replaced."""

import pytest

from chipadapt.errors import ChipadaptError
from chipadapt.io.built_from import record_path, reusable, why_rebuild, write_built

BUILT_FROM = {"passages": {"max_chars": 512, "sources": {"docs": {"content": "abc"}}}}


def test_reused_while_the_settings_inputs_and_content_match(tmp_path):
    target = tmp_path / "passages.jsonl"
    assert why_rebuild(target, BUILT_FROM, "") == "not built yet"
    write_built(target, "one\n", BUILT_FROM)
    assert why_rebuild(target, BUILT_FROM, "") is None
    assert reusable(target, BUILT_FROM, "")


def test_other_settings_or_inputs_are_named(tmp_path):
    target = write_built(tmp_path / "passages.jsonl", "one\n", BUILT_FROM)
    other = {"passages": {"max_chars": 300, "sources": {"docs": {"content": "abd"}}}}
    why = why_rebuild(target, other, "")
    assert "passages.max_chars: 512 -> 300" in why and "passages.sources.docs.content: 'abc' -> 'abd'" in why
    assert not reusable(target, other, "")
    with pytest.raises(ChipadaptError, match=r"ckpt trained on .*passages\.jsonl, which would now be built again"):
        reusable(target, other, "", resumed="DIR/checkpoints/last.ckpt")


def test_a_file_changed_since_or_a_cut_off_build_is_built_again(tmp_path):
    target = write_built(tmp_path / "passages.jsonl", "one\n", BUILT_FROM)
    target.write_text("edited\n")
    assert "is not what was built" in why_rebuild(target, BUILT_FROM, "")
    # A build cut off after its record: the record names content the file does not hold.
    write_built(target, "two\n", BUILT_FROM)
    record = record_path(target).read_text()
    write_built(target, "three\n", BUILT_FROM)
    target.write_text("two\n")
    assert record_path(target).read_text() != record
    assert "is not what was built" in why_rebuild(target, BUILT_FROM, "")


def test_a_file_without_a_record_is_neither_reused_nor_replaced(tmp_path):
    target = tmp_path / "passages.jsonl"
    target.write_text("mine\n")
    with pytest.raises(ChipadaptError, match=r"passages\.jsonl: no record .*; move it away .*, or use retriever"):
        reusable(target, BUILT_FROM, "use retriever.passages=FILE")
    assert target.read_text() == "mine\n"


def test_the_resume_of_a_checkpoint_that_trained_on_an_unrecorded_file_adopts_it(tmp_path):
    """A run preempted under the previous chipadapt, which kept no records: its resume was refused, and
    moving the file away (as the message said) was refused too, leaving only resume=false."""
    target = tmp_path / "passages.jsonl"
    target.write_text("built by an earlier chipadapt\n")
    assert reusable(target, BUILT_FROM, "", resumed="DIR/checkpoints/last.ckpt")
    assert target.read_text() == "built by an earlier chipadapt\n"
    assert why_rebuild(target, BUILT_FROM, "") is None  # recorded now: the next rerun reuses it too
