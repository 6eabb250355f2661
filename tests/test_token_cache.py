import numpy as np
import pytest
from conftest import write_jsonl

from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.token_cache import tokenize_source


@pytest.fixture(scope="module")
def tokenizer():
    from chipadapt.models.tiny import train_tiny_tokenizer

    return train_tiny_tokenizer(["module fifo; wire full; endmodule", "set_clock_uncertainty 0.25"] * 20, 300)


def test_second_call_opens_the_cache_and_returns_the_same_tokens(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "module fifo;"}, {"text": "wire full; endmodule"}])
    spec = SourceSpec(path=str(path))
    first = tokenize_source(spec, "c", tokenizer, tmp_path / "cache")
    second = tokenize_source(spec, "c", tokenizer, tmp_path / "cache")
    assert first.built and not second.built
    assert first.key == second.key
    np.testing.assert_array_equal(first.tokens, second.tokens)
    expected = tokenizer("wire full; endmodule", add_special_tokens=False)["input_ids"]
    assert second.doc_tokens(1).tolist() == expected
    assert second.doc_ids == ["c.jsonl:1", "c.jsonl:2"]


def test_key_changes_with_file_content_and_tokenizer(tmp_path, tokenizer):
    from chipadapt.models.tiny import train_tiny_tokenizer

    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "module fifo;"}])
    spec = SourceSpec(path=str(path))
    key = tokenize_source(spec, "c", tokenizer, tmp_path / "cache").key
    write_jsonl(path, [{"text": "module timer;"}])
    changed = tokenize_source(spec, "c", tokenizer, tmp_path / "cache")
    assert changed.built and changed.key != key
    other = train_tiny_tokenizer(["completely different text"] * 5, 280)
    assert tokenize_source(spec, "c", other, tmp_path / "cache").key != changed.key


CONCURRENT_TOKENIZER = """
import json, sys, time
from pathlib import Path
from chipadapt.data.source_spec import SourceSpec
from chipadapt.data.token_cache import tokenize_source
from chipadapt.models.tiny import train_tiny_tokenizer

root, name = Path(sys.argv[1]), sys.argv[2]
tokenizer = train_tiny_tokenizer(["module fifo; wire full; endmodule"] * 20, 300)

def slow_tokenizer(texts, **kwargs):  # long enough for the other job to arrive mid-build
    time.sleep(1.5)
    return tokenizer(texts, **kwargs)

(root / f"{name}.ready").touch()
while not all((root / f"{n}.ready").exists() for n in "ab"):
    time.sleep(0.02)
out = tokenize_source(SourceSpec(path=str(root / "c.jsonl")), "c", slow_tokenizer, root / "cache", tokenizer_hash="t")
(root / f"{name}.json").write_text(json.dumps({"built": out.built, "tokens": out.tokens.tolist()}))
"""


def test_two_jobs_tokenizing_one_source_at_once_build_it_once(tmp_path):
    """The jobs of a sweep start together: the second waits for the first's entry instead of
    tokenizing again and replacing it while the first reads it."""
    import json
    import subprocess
    import sys

    write_jsonl(tmp_path / "c.jsonl", [{"text": "module fifo;"}, {"text": "wire full; endmodule"}])
    script = tmp_path / "job.py"
    script.write_text(CONCURRENT_TOKENIZER)
    jobs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), name]) for name in "ab"]
    assert [job.wait(timeout=120) for job in jobs] == [0, 0]
    results = [json.loads((tmp_path / f"{name}.json").read_text()) for name in "ab"]
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["tokens"] == results[1]["tokens"]
