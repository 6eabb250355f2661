"""A retriever's search timed as evaluate.py and the retriever stage report it (`ms_per_query`)."""

import time
from collections.abc import Callable


def timed_search(retriever, texts: list[str], depth: int, after_warmup: Callable[[], None] = lambda: None):
    """(hits, milliseconds per query) of one search over `texts`. One query is searched untimed first: no
    figure carries a first call's set-up (a model's first batch, a lazily built index). `after_warmup`
    resets what the warm-up counted (a reranker's own timer)."""
    retriever.search(texts[:1], 1)
    after_warmup()
    start = time.perf_counter()
    hits = retriever.search(texts, depth)
    return hits, round(1000 * (time.perf_counter() - start) / max(len(texts), 1), 2)
