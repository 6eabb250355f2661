import numpy as np
import pytest
from conftest import write_jsonl

from chipadapt.data.sources import SourceSpec
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
