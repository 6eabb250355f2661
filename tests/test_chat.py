"""chat.py: an interactive session driven through stdin, with commands, attributes and retrieval."""

import subprocess
import sys

import pytest

from conftest import ROOT, write_jsonl


def chat(args: list[str], lines: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "chat.py"), "model=tiny", "generate.max_new_tokens=4", *args,
                           f"hydra.run.dir={tmp_path / 'chat'}"], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


@pytest.mark.integration
def test_chat_answers_each_question_and_handles_commands(tmp_path):
    proc = chat([], ["What is a latch?", "/attributes quality:4,humor:0", "And a flip-flop?", "/reset", "/quit", "never asked"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("assistant> ") == 2  # /quit stops before the last line
    assert "(attributes: quality:4,humor:0)" in proc.stdout and "(history cleared)" in proc.stdout


@pytest.mark.integration
def test_chat_with_retrieval_shows_the_sources_of_the_last_answer(tmp_path):
    passages = write_jsonl(tmp_path / "p.jsonl", [{"id": "cts#1", "text": "Clock tree synthesis inserts buffers to balance skew.", "source": "cts.md"},
                                                 {"id": "pdn#1", "text": "pdngen builds the power grid.", "source": "pdn.md"}])
    proc = chat(["retrieval=openroad", f"retrieval.passages={passages}", "retrieval.use=bm25", "retrieval.encoders={}",
                 "retrieval.hybrid=null", "retrieval.top_k=1"], ["How is clock skew balanced?", "/sources", "/quit"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "with retrieval" in proc.stdout and "cts.md" in proc.stdout.split("assistant> ")[-1]


def test_attribute_strings_from_the_command_line_are_checked():
    from chipadapt.chat import parse_attributes
    from chipadapt.errors import ChipadaptError

    assert parse_attributes("quality:4, humor:0") == {"quality": 4.0, "humor": 0.0}
    with pytest.raises(ChipadaptError, match="'humor' is not name:value"):
        parse_attributes("quality:4,humor")
