"""chat.py end to end: an interactive session driven through stdin or a pseudo-terminal, with commands,
attributes and retrieval (the session's replies in process: test_chat_session.py)."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_jsonl


def chat(args: list[str], lines: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "chat.py"),
            "model=tiny",
            "generate.max_new_tokens=4",
            *args,
            f"hydra.run.dir={tmp_path / 'chat'}",
        ],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.integration
def test_chat_answers_each_question_and_handles_commands(tmp_path):
    """Questions and every command in one session (each chat.py spent seconds starting): /save writes the
    transcript and the log records the session; /quit stops before the last line."""
    import json

    mine = tmp_path / "mine.jsonl"
    proc = chat(
        [],
        [
            "What is a latch?",
            "/bogus",
            "/save",
            f"/save {mine}",
            f"/save {mine}",
            "/help",
            "/attributes quality:4,humor:0",
            "And a flip-flop?",
            "/reset",
            "/quit",
            "never asked",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("assistant> ") == 2  # /quit stops before the last line
    assert "(history cleared)" in proc.stdout
    # The tiny model is no SteerLM model: attributes are refused as evaluate.py refuses them, and the session goes on.
    assert "chipadapt: error: /attributes: " in proc.stderr and "format is unknown" in proc.stderr
    assert "chipadapt: error: unknown command /bogus" in proc.stderr
    assert f"chipadapt: error: /save: {mine} exists" in proc.stderr  # a user's file is never overwritten
    assert "/sources" in proc.stdout and "/save [FILE]" in proc.stdout  # /help
    for saved in (tmp_path / "chat" / "transcript.jsonl", mine):  # saved after the first answer
        record = json.loads(saved.read_text())
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    log = (tmp_path / "chat" / "chat.log").read_text()
    assert "user: What is a latch?" in log and "assistant: " in log and "error: unknown command /bogus" in log
    assert "user: never asked" not in log
    assert json.loads((tmp_path / "chat" / "manifest.json").read_text())["status"] == "completed"


@pytest.mark.integration
def test_chat_with_retrieval_shows_the_sources_of_the_last_answer(tmp_path):
    import json

    passages = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "cts#1", "text": "Clock tree synthesis inserts buffers to balance skew.", "source": "cts.md"},
            {"id": "pdn#1", "text": "pdngen builds the power grid.", "source": "pdn.md"},
        ],
    )
    proc = chat(
        [
            "retrieval=openroad",
            f"retrieval.passages={passages}",
            "retrieval.use=bm25",
            "retrieval.encoders={}",
            "retrieval.hybrid=null",
            "retrieval.top_k=1",
        ],
        ["How is clock skew balanced?", "/sources"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # stdin ends: the session ends cleanly
    assert "with retrieval" in proc.stdout and "cts.md" in proc.stdout.split("assistant> ")[-1]
    assert json.loads((tmp_path / "chat" / "manifest.json").read_text())["status"] == "completed"


def test_a_template_given_as_a_word_is_one_line_naming_the_group_override(tmp_path):
    proc = chat(["template=chipnemo"], ["/quit"], tmp_path)
    assert proc.returncode == 2 and "Error executing job" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "chipadapt: error: template: 'chipnemo' is not a chat template's config; "
        "choose one with data/template@template=chipnemo (or =model)"
    ]


class Terminal:
    """chat.py on a pseudo-terminal, as a user at a keyboard drives it (stdlib pty, no pexpect)."""

    def __init__(self, args: list[str], cwd):
        import os
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: chat.py with the pty as its controlling terminal
            os.chdir(cwd)
            os.environ["TERM"] = "dumb"
            os.execv(sys.executable, [sys.executable, str(ROOT / "chat.py"), *args])
        self.seen, self.reaped = "", False

    def expect(self, text: str, timeout: float = 180) -> str:
        import os
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never appeared; the terminal shows:\n{self.seen[-2000:]}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"chat.py ended before {text!r}; the terminal shows:\n{self.seen[-2000:]}"
                self.seen += chunk.decode(errors="replace")
        before, _, self.seen = self.seen.partition(text)
        return before

    def send(self, keys: str) -> None:
        import os

        os.write(self.fd, keys.encode())

    def kill(self) -> None:
        import os
        import signal

        if self.reaped:  # its pid may belong to another process by now
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.reaped = True

    def exit_status(self, timeout: float = 60) -> int:
        import os
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.read(self.fd, 4096)  # drain, so the child never blocks writing
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.reaped = True
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        self.kill()
        raise AssertionError("chat.py did not exit")


@pytest.mark.integration
def test_chat_in_a_terminal_ctrl_c_stops_the_reply_and_ctrl_d_exits_cleanly(tmp_path):
    import time

    # Greedy decoding of the tiny random model writes newlines until max_new_tokens: a reply of
    # many seconds, long enough to interrupt.
    # (A context of 4,096 positions: a reply stops at the context's end.)
    args = ["model=tiny", "model.source.max_position_embeddings=4096", "generate.max_new_tokens=2000"]
    term = Terminal([*args, f"hydra.run.dir={tmp_path / 'chat'}"], ROOT)
    try:
        term.expect("you> ")
        term.send("/help\r")
        assert "/save [FILE]" in term.expect("you> ")
        term.send("/bogus\r")
        assert "unknown command /bogus" in term.expect("you> ")
        term.send("\x1b[A\r")  # arrow up recalls the last line (readline history)
        assert "unknown command /bogus" in term.expect("you> ")
        term.send("What is a latch?\r")
        term.expect("assistant> ")
        # Text of the reply: streamed only inside the loop whose Ctrl-C handler stops it (no fixed sleep,
        # which on a loaded host could press Ctrl-C before that handler is in place).
        term.expect("\n")
        started = time.monotonic()
        term.send("\x03")  # Ctrl-C mid-reply
        term.expect("reply stopped")
        term.expect("you> ")
        assert time.monotonic() - started < 30  # stopped, not run to max_new_tokens
        term.send("\x04")  # Ctrl-D at the prompt
        assert term.exit_status() == 0
    finally:
        term.kill()  # a failed step must not leave chat.py generating beside the next tests
    log = (tmp_path / "chat" / "chat.log").read_text()
    assert "user: What is a latch?" in log and "(stopped by Ctrl-C)" in log
    import os

    history = Path(os.environ["CHIPADAPT_CACHE"]) / "chat_history"
    assert "/bogus" in history.read_text()
