"""chat.py given bytes that are no UTF-8 (Latin-1 pasted into a terminal, a file piped in): each such byte
is read as U+FFFD and the session goes on. They ended it: as lone surrogates the tokenizer refused the
question (TypeError, a traceback), and strictly decoded stdin raised on reading."""

import io
import json
import os
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

LATIN1 = b"caf\xe9 \xff\xfe?\n"
READ = "caf\ufffd \ufffd\ufffd?"


def tokenize(text: str) -> list[int]:
    """What the session's tokenizer does with a question: the fast tokenizers refuse a lone surrogate."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")).encode(text).ids


def piped(monkeypatch, data: bytes, errors: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors=errors))


# surrogateescape: Python's stdin under a C or C.UTF-8 locale; strict: under en_US.UTF-8 and the like.
@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_piped_bytes_that_are_no_utf8_are_read_as_replacement_characters(monkeypatch, tmp_path, errors):
    from chipadapt.chat import read_lines

    piped(monkeypatch, LATIN1 + "naïve\n".encode(), errors)
    lines = [line.rstrip("\n") for line in read_lines("you> ", tmp_path / "history")]
    assert lines == [READ, "naïve"]  # valid UTF-8 is read as it was
    assert tokenize(lines[0])


class Session:
    """The session's part converse() drives: its reply tokenizes the question, as ChatSession's does."""

    def __init__(self):
        self.retriever, self.messages, self.reply_attributes = None, [], []

    def reply(self, text: str) -> str:
        tokenize(text)
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
        self.reply_attributes.append({})
        return "ok"


def test_the_session_goes_on_and_its_transcript_stays_utf8_json(monkeypatch, tmp_path):
    from chipadapt.chat import converse

    piped(monkeypatch, LATIN1 + b"/save\nsecond question\n/quit\n", "surrogateescape")
    cfg = OmegaConf.create({"model": {"path": None, "name": "tiny"}, "paths": {"cache_dir": str(tmp_path)}})
    session = Session()
    converse(session, cfg, tmp_path)
    record = json.loads((tmp_path / "transcript.jsonl").read_bytes().decode("utf-8"))
    assert [m["content"] for m in record["messages"]] == [READ, "ok"]
    assert session.messages[2]["content"] == "second question"  # the session went on after the line


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a pseudo-terminal needs fork")
def test_bytes_typed_at_the_terminal_prompt_are_read_as_replacement_characters(tmp_path):
    """The terminal's path: input() at a readline prompt decodes with stdin's errors too."""
    import pty

    out = tmp_path / "lines.json"
    script = (
        "import json, sys; from pathlib import Path; from chipadapt.chat import read_lines; "
        f"lines = list(read_lines('you> ', Path({str(tmp_path / 'history')!r}))); "
        f"Path({str(out)!r}).write_text(json.dumps(lines))"
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty as its terminal; strict decoding, as under en_US.UTF-8
        os.environ.update(TERM="dumb", PYTHONIOENCODING="utf-8:strict")
        os.execv(sys.executable, [sys.executable, "-c", script])
    seen = b""
    while b"you> " not in seen:
        seen += os.read(fd, 1024)
    os.write(fd, LATIN1)
    while seen.count(b"you> ") < 2:
        seen += os.read(fd, 1024)
    os.write(fd, b"\x04")  # Ctrl-D: the session ends
    try:
        while os.read(fd, 1024):
            pass
    except OSError:  # the child closed the terminal
        pass
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")[-2000:]
    # readline may swallow a byte it takes for the start of a character (the \xe9 here): the rest arrive.
    (line,) = json.loads(out.read_text())
    assert line.startswith("caf") and line.endswith(" \ufffd\ufffd?") and tokenize(line)
    assert Path(tmp_path / "history").is_file()
