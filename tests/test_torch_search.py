"""Dense search as a torch matrix product (the GPU path) gives faiss's hits."""

import numpy as np
import pytest
import torch
from test_retrieval import DENSE, PASSAGES, minilm_folder

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.torch_search import TorchFlatIndex

QUESTIONS = ["Which step builds the power distribution network?", "How is the clock buffered?"]


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def faiss_search(passages: np.ndarray, queries: np.ndarray, k: int):
    import faiss

    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(passages)
    return index.search(queries, k)


def check_same_hits(device: str) -> None:
    passages, queries = unit_vectors(3000, 384, 0), unit_vectors(2100, 384, 1)  # more queries than one block
    scores, rows = TorchFlatIndex(passages, device).search(queries, 10)
    want_scores, want_rows = faiss_search(passages, queries, 10)
    assert rows.shape == (2100, 10) and (rows == want_rows).mean() > 0.999  # near-ties may swap
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)


def test_torch_top_k_equals_faiss_on_cpu():
    check_same_hits("cpu")


def test_dense_retriever_search_switch(tmp_path):
    from chipadapt.retrieval.retrievers import DenseRetriever

    folder = minilm_folder()
    settings = {**DENSE, "device": "cpu"}
    faiss_dense = DenseRetriever(encoder_path=str(folder), encoder_package=None, **{**settings, "search": "faiss"})
    torch_dense = DenseRetriever(
        encoder_path=str(folder),
        encoder_package=None,
        index_dir=str(tmp_path / "idx"),
        **{**settings, "search": "torch"},
    )
    for retriever in (faiss_dense, torch_dense):
        retriever.index(PASSAGES)
    assert faiss_dense.torch_index is None and torch_dense.torch_index is not None
    want = faiss_dense.search(QUESTIONS, 3)
    got = torch_dense.search(QUESTIONS, 3)
    assert [[pid for pid, _ in row] for row in got] == [[pid for pid, _ in row] for row in want]
    reloaded = DenseRetriever(
        encoder_path=str(folder),
        encoder_package=None,
        index_dir=str(tmp_path / "idx"),
        **{**settings, "search": "torch"},
    )
    reloaded.index(PASSAGES)  # from the saved faiss index: its vectors go to the torch index
    assert [[pid for pid, _ in row] for row in reloaded.search(QUESTIONS, 3)] == [
        [pid for pid, _ in row] for row in want
    ]
    with pytest.raises(ChipadaptError, match="dense.search: 'gpu' is not one of auto, faiss, torch"):
        DenseRetriever(encoder_path=str(folder), encoder_package=None, **{**settings, "search": "gpu"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_the_gpu_auto_search_uses_torch_and_finds_faiss_hits():
    from chipadapt.retrieval.retrievers import DenseRetriever

    check_same_hits("cuda")
    dense = DenseRetriever(encoder_path=str(minilm_folder()), encoder_package=None, **{**DENSE, "search": "auto"})
    dense.index(PASSAGES)
    assert dense.torch_index.matrix.is_cuda
    assert dense.search(QUESTIONS, 1)[0][0][0] == "p2"
