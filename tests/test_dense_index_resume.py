"""A cached dense index's build killed part way resumes from the parts it saved (retrievers.EMBED_PART)."""

from pathlib import Path

import numpy as np
import pytest

from chipadapt.retrieval import retrievers
from chipadapt.retrieval.build import check_index_dir
from chipadapt.retrieval.passages import Passage
from chipadapt.retrieval.retrievers import DenseRetriever


class Killed(Exception):
    pass


class CountingEncoder:
    """Stands in for TextEncoder: a vector from each text's bytes; counts texts embedded; dies on call `die_at`."""

    pooling, passage_prefix, max_tokens, dim = "mean", "", {False: 32}, 8

    def __init__(self, die_at: int | None = None):
        self.embedded, self.calls, self.die_at = 0, 0, die_at

    def encode(self, texts, is_query, batch_size=64, progress=None):
        self.calls += 1
        if self.calls == self.die_at:
            raise Killed
        self.embedded += len(texts)
        out = np.array([[len(t) + i + sum(t.encode()) % 7 for i in range(self.dim)] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def retriever(index_dir: Path, encoder: CountingEncoder, folder: Path) -> DenseRetriever:
    dense = DenseRetriever.__new__(DenseRetriever)  # no encoder weights to load
    dense.folder, dense.encoder, dense.context, dense.batch_size = folder, encoder, False, 2
    dense.index_dir, dense.search_device, dense.torch_index = index_dir, None, None
    return dense


def test_killed_index_build_resumes_from_saved_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrievers, "EMBED_PART", 4)
    passages = [Passage(f"docs:f.md#{i}", f"passage number {i} about clock skew", "docs:f.md") for i in range(10)]
    index_dir = tmp_path / "index" / "base"
    with pytest.raises(Killed):  # parts 0-3 and 4-7 saved, killed on 8-9
        retriever(index_dir, CountingEncoder(die_at=3), tmp_path).index(passages)
    check_index_dir(str(tmp_path / "index"), "eval.retrieval.index_dir", [])  # the parts do not spoil the cache

    again = CountingEncoder()
    resumed = retriever(index_dir, again, tmp_path)
    resumed.index(passages)
    assert again.embedded == 2  # only the part the kill cut off
    fresh = retriever(tmp_path / "fresh", CountingEncoder(), tmp_path)
    fresh.index(passages)
    n = len(passages)
    assert np.allclose(resumed.faiss_index.reconstruct_n(0, n), fresh.faiss_index.reconstruct_n(0, n))
    assert not list(index_dir.glob(".*.partial.tmp"))  # published: the parts are gone
    reloaded = CountingEncoder()
    retriever(index_dir, reloaded, tmp_path).index(passages)
    assert reloaded.embedded == 0  # the finished index is reused whole
