"""chat.py's SteerLM attributes: parsed from the command line, pointed out when a model never saw them,
and stamped on a saved transcript as the replies were generated."""

import pytest


def test_attribute_strings_from_the_command_line_are_checked():
    from chipadapt.chat import parse_attributes
    from chipadapt.errors import ChipadaptError

    assert parse_attributes("quality:4, humor:0") == {"quality": 4.0, "humor": 0.0}
    with pytest.raises(ChipadaptError, match="'humor' is not name:value"):
        parse_attributes("quality:4,humor")


def test_attributes_a_steerlm_model_never_saw_are_pointed_out():
    from chipadapt.chat import parse_attributes, unfamiliar_attributes

    order = ["quality", "helpfulness", "humor"]
    assert unfamiliar_attributes(parse_attributes("quality:4,humor:0"), order) == ""
    note = unfamiliar_attributes(parse_attributes("helpfullness:4,quality:9,humor:-1"), order)
    assert note == (
        "helpfullness is not one of attribute_order (quality, helpfulness, humor); "
        "quality:9 is off the 0-4 scale; humor:-1 is off the 0-4 scale"
    )


def test_save_stamps_the_attributes_the_replies_were_generated_under(tmp_path):
    import json
    from types import SimpleNamespace

    from chipadapt.chat import save_transcript

    turns = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    # Replies under quality 4, then /attributes changed to quality 0 and /save: the record says 4.
    session = SimpleNamespace(messages=turns, reply_attributes=[{"quality": 4.0}], attributes={"quality": 0.0})
    dest, note = save_transcript(session, "", tmp_path)
    assert json.loads(dest.read_text())["attributes"] == {"quality": 4.0} and note == ""
    # Two replies under different attributes: each assistant message carries its own, the record none.
    session.messages = turns + [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    session.reply_attributes = [{"quality": 4.0}, {}]
    dest, note = save_transcript(session, str(tmp_path / "two.jsonl"), tmp_path)
    record = json.loads(dest.read_text())
    assert "attributes" not in record and "different attributes" in note
    assert [m.get("attributes") for m in record["messages"]] == [None, {"quality": 4.0}, None, {}]
    session.reply_attributes = [{}, {}]  # none set: none recorded
    dest, _ = save_transcript(session, str(tmp_path / "none.jsonl"), tmp_path)
    assert (
        "attributes" not in json.loads(dest.read_text())
        and "attributes" not in json.loads(dest.read_text())["messages"][1]
    )
