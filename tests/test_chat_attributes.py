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


def _folder(tmp_path, **record):
    import json

    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], **record}))
    return folder


def test_attributes_for_a_model_that_records_no_steerlm_format_are_refused_as_evaluate_refuses_them(
    monkeypatch, tmp_path
):
    """chat.py warned and prompted a plain model with an attribute string; evaluate.py refused the same
    setting on the same model. Both refuse now, in the same words, before the template or the session."""
    from omegaconf import OmegaConf

    import chipadapt.chat_session as chat_session
    from chipadapt.chat import ChatSession
    from chipadapt.errors import ChipadaptError
    from chipadapt.eval.steering import start_steering

    folder = _folder(tmp_path)
    monkeypatch.setattr(chat_session, "resolve_model_folder", lambda model: folder)
    monkeypatch.setattr(chat_session, "load_for_inference", lambda *a: type("L", (), {"model": 0, "tokenizer": 0})())
    cfg = OmegaConf.create({"model": {}, "template": {}, "generate": {"attributes": "quality:4"}})
    with pytest.raises(ChipadaptError) as evaluate_refusal:
        start_steering(cfg, folder)
    with pytest.raises(ChipadaptError) as chat_refusal:
        ChatSession(cfg)
    assert str(chat_refusal.value) == str(evaluate_refusal.value)
    assert str(chat_refusal.value).startswith(f"generate.attributes: {folder}/config.json records no steerlm_attr")


def test_the_attributes_command_is_refused_for_such_a_model_and_taken_for_a_steerlm_one(tmp_path, capsys):
    from types import SimpleNamespace

    from chipadapt.chat_commands import command
    from chipadapt.errors import ChipadaptError

    session = SimpleNamespace(folder=_folder(tmp_path), attributes={}, order=["quality", "humor"])
    with pytest.raises(ChipadaptError, match=r"^/attributes: .*records no steerlm_attribute_order and steerlm_te"):
        command(session, "/attributes quality:4", tmp_path)
    assert session.attributes == {}  # unchanged: the next replies are prompted as before
    assert command(session, "/attributes", tmp_path) and "(attributes: none)" in capsys.readouterr().out

    template = {"_target_": "chipadapt.data.chat_templates.StringTemplate"}
    session.folder = _folder(tmp_path / "steerlm", steerlm_attribute_order=["quality"], steerlm_template=template)
    assert command(session, "/attributes quality:4", tmp_path) and session.attributes == {"quality": 4.0}


def test_attributes_are_refused_before_the_weights_load(monkeypatch, tmp_path):
    """chat.py loaded the model, seconds to minutes of it, and only then refused generate.attributes; evaluate.py
    refuses from the folder alone."""
    from omegaconf import OmegaConf

    import chipadapt.models.hf_folder as hf_folder
    from chipadapt.chat import ChatSession
    from chipadapt.errors import ChipadaptError

    loads = []
    monkeypatch.setattr(hf_folder, "load_causal_lm", lambda *a: loads.append("weights"))
    monkeypatch.setattr(hf_folder, "load_tokenizer", lambda *a: loads.append("tokenizer"))
    folder = _folder(tmp_path)
    model = {"path": str(folder), "source": None, "dtype": "float32", "attn_implementation": "sdpa"}
    cfg = OmegaConf.create({"model": model, "template": {}, "generate": {"attributes": "quality:4"}})
    with pytest.raises(ChipadaptError, match=r"^generate.attributes: .*records no steerlm_attribute_order"):
        ChatSession(cfg)
    assert loads == []


def test_the_refusal_says_to_leave_the_setting_that_asked_unset(tmp_path):
    """The cause of a folder with an order and no template named evaluate's key whichever setting asked."""
    from chipadapt.chat_commands import command
    from chipadapt.errors import ChipadaptError
    from chipadapt.steerlm.attribute_record import recorded_format

    folder = _folder(tmp_path, steerlm_attribute_order=["quality"])
    session = type("S", (), {"folder": folder, "attributes": {}, "order": ["quality"]})()
    with pytest.raises(ChipadaptError) as refused:
        command(session, "/attributes quality:4", tmp_path)
    said = str(refused.value)
    assert said.startswith("/attributes: ") and "saved before templates were recorded" in said
    assert said.endswith("or leave /attributes unset), so the attributes' format is unknown")
    assert "generate.attributes" not in said
    with pytest.raises(ChipadaptError, match=r"or leave generate\.attributes unset\)"):
        recorded_format(folder, "generate.attributes")
