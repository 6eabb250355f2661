"""chat.py's `/save` to a place it cannot write: one error line, and the conversation goes on (it was a
traceback that ended the chat, its manifest failed)."""

import pytest


class _Session:
    """What converse() uses of a chat session, answering without a model."""

    retriever = None

    def __init__(self):
        self.messages, self.reply_attributes = [], []

    def reply(self, text: str) -> str:
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "a latch"}]
        self.reply_attributes.append({})
        return "a latch"


@pytest.mark.parametrize("unwritable", ["under_a_file", "read_only"])
def test_save_to_an_unwritable_place_is_one_line_and_the_chat_goes_on(tmp_path, monkeypatch, capsys, unwritable):
    from omegaconf import OmegaConf

    from chipadapt import chat as chat_module
    from chipadapt import chat_commands

    (tmp_path / "notes.txt").write_text("mine\n")
    target = tmp_path / "notes.txt" / "t.jsonl"
    if unwritable == "read_only":  # as a folder made immutable (chattr +i) refuses even root
        target = tmp_path / "locked" / "t.jsonl"

        def refused(path, text):
            raise PermissionError(1, "Operation not permitted", str(path.parent / f".{path.name}.x.tmp"))

        monkeypatch.setattr(chat_commands, "write_text_atomic", refused)  # where /save looks it up
    lines = [f"/save {target}", "What is a latch?", "/save"]
    monkeypatch.setattr(chat_module, "read_lines", lambda prompt, history: iter(lines))
    if unwritable == "read_only":
        lines.pop()  # every write fails here
    session = _Session()
    cfg = OmegaConf.create({"model": {"path": "m", "name": "m"}, "paths": {"cache_dir": str(tmp_path)}})
    chat_module.converse(session, cfg, tmp_path / "run")
    err = capsys.readouterr().err.strip().splitlines()
    reason = f"{tmp_path / 'notes.txt'} is a file, not a folder" if unwritable == "under_a_file" else "not permitted"
    assert len(err) == 1 and err[0].startswith(f"chipadapt: error: /save: cannot write {target} (") and reason in err[0]
    assert len(session.messages) == 2  # the conversation went on after the refused /save
    if unwritable == "under_a_file":
        assert (tmp_path / "run" / "transcript.jsonl").is_file() and (tmp_path / "notes.txt").read_text() == "mine\n"
