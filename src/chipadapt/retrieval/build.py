"""Build retrievers and passages from config sections shared by `eval=retrieval`, `eval=rag_qa` and
`stage=retriever`."""

from pathlib import Path

from chipadapt.retrieval.passages import Passage, build_passages, read_passages
from chipadapt.retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever


def load_passages(path: str | None, build: dict) -> list[Passage]:
    """A passages file (ids used as given, not re-chunked), or passages built from `build`'s sources;
    with `build.context`, each built passage starts with its document title and section path."""
    if path:
        return read_passages(Path(path))
    passages = build_passages(build["sources"], build["max_chars"], build["min_chars"], build["overlap_chars"])
    return [p.with_context() for p in passages] if build["context"] else passages


def make_retrievers(
    encoders: dict, dense: dict, bm25: dict | None, hybrid: dict | None, index_root: str | None = None
) -> dict:
    """name -> retriever: `bm25`, one dense retriever per encoder, and `hybrid` over BM25 + one of them."""
    retrievers = {}
    if bm25 is not None:
        retrievers["bm25"] = BM25Retriever(**bm25)
    for name, enc in (encoders or {}).items():
        if enc is None:
            continue
        index_dir = str(Path(index_root) / name) if index_root else None
        retrievers[name] = DenseRetriever(
            encoder_path=enc.get("path"), encoder_package=enc.get("package"), index_dir=index_dir, **dense
        )
    if hybrid is not None and hybrid.get("dense"):
        from chipadapt.errors import ChipadaptError

        dense_name = hybrid["dense"]
        if dense_name not in retrievers or "bm25" not in retrievers:
            raise ChipadaptError(
                f"hybrid.dense: {dense_name!r} needs bm25 and an encoder of that name "
                f"(encoders: {sorted(encoders or {})})"
            )
        settings = {k: v for k, v in hybrid.items() if k != "dense"}
        retrievers["hybrid"] = HybridRetriever(retrievers["bm25"], retrievers[dense_name], **settings)
    return retrievers


def chosen_retriever(retrievers: dict, use: str, key: str):
    """The retriever `use` names; `key`: the config key that names it, for the error."""
    if use not in retrievers:
        from chipadapt.errors import ChipadaptError

        raise ChipadaptError(f"{key}: {use!r} is not one of {sorted(retrievers)}")
    return retrievers[use]
