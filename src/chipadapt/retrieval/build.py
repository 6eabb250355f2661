"""Build retrievers and passages from config sections shared by `eval=retrieval`, `eval=rag_qa` and
`stage=retriever`."""

from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.io.outputs import written_by
from chipadapt.retrieval.passage_cleaning import CleaningReport
from chipadapt.retrieval.passages import Passage, build_passages_report, read_passages
from chipadapt.retrieval.retrievers import INDEX_WRITER, BM25Retriever, DenseRetriever, HybridRetriever

# What the dense index writer leaves in `<index_dir>/<encoder>/` beside its entries (folders it
# publishes with its marker): build locks, temporaries of a build that was killed, and the files of
# the one-index-per-encoder layout used before e89f4c5 (2026-12-06).
LEGACY_INDEX_FILES = {"index.faiss", "ids.json", "index.json"}


# The build settings that clean documents before they are cut (passage_cleaning.py); set in every
# conf/passages preset.
CLEANING_KEYS = ("redact", "drop_duplicates", "keep_machine_like", "undecodable_share")


def load_passages(path: str | None, build: dict, key: str = "passages") -> list[Passage]:
    """A passages file (ids used as given, not re-chunked), or passages built from `build`'s sources;
    with `build.context`, each built passage starts with its document title and section path. `key`: the
    config key of `build` (`eval.retrieval.build`), named in its errors."""
    return load_passages_report(path, build, key)[0]


def load_passages_report(
    path: str | None, build: dict, key: str = "passages"
) -> tuple[list[Passage], CleaningReport | None]:
    """`load_passages`, and for a build what its cleaning did (logged here; None for a passages file).
    Its `duplicates` map each dropped passage id to the one kept, for gold ids that name a dropped one."""
    if path:
        return read_passages(Path(path)), None
    missing = [k for k in CLEANING_KEYS if k not in build]
    if missing:
        raise ChipadaptError(f"{key}.{missing[0]}: not set (see conf/passages/folder.yaml)")
    passages, report = build_passages_report(
        build["sources"],
        build["max_chars"],
        build["min_chars"],
        build["overlap_chars"],
        {k: build[k] for k in CLEANING_KEYS},
    )
    report.tell()
    return ([p.with_context() for p in passages] if build["context"] else passages), report


def passages_named(path: str | None, build: dict | None, count: int) -> str:
    """Where a gold id was looked for, for the error "positive id X is not ...": a file, or a build and its
    sources."""
    if path:
        return f"in the passages file {path}"
    sources = ", ".join(str((spec or {}).get("path")) for spec in ((build or {}).get("sources") or {}).values())
    return f"among the {count:,} passages built from {sources}"


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


def retrieval_inputs(prefix: str, passages: str | None, build: dict | None, encoders: dict | None, bm25: dict | None):
    """(config key, path) of every local file or folder a retrieval section reads; `prefix` is the
    section's key (`eval.retrieval`, `eval.rag_qa.retrieval`). Build sources count only when no
    passages file replaces them."""
    pairs = [(f"{prefix}.passages", passages)]
    if not passages:
        for name, source in ((build or {}).get("sources") or {}).items():
            if source:
                pairs.append((f"{prefix}.build.sources.{name}.path", source.get("path")))
    for name, encoder in (encoders or {}).items():
        if encoder:
            pairs.append((f"{prefix}.encoders.{name}.path", encoder.get("path")))
    pairs.append((f"{prefix}.bm25.expansion", (bm25 or {}).get("expansion")))
    return [(key, str(path)) for key, path in pairs if path]


def check_index_dir(index_dir: str | None, key: str, inputs: list[tuple[str, str | None]]) -> None:
    """Refuse, before any work, an `index_dir` the dense index writer could spoil: one that is, holds
    or lies inside an input (the rule io/outputs.check_output_folder applies to every output folder),
    or one that holds anything the writer did not write. The folder is a cache the writer adds
    entries to (`<encoder>/<fingerprint>/`), not one output replaced whole, so it carries no marker
    of its own: its contents say whose it is."""
    if not index_dir:
        return
    from chipadapt.io.outputs import refuse_overlap_with_inputs

    root = refuse_overlap_with_inputs(index_dir, key, inputs, "keep indexes somewhere else")
    if root.exists() and not root.is_dir():
        raise ChipadaptError(f"{key}: {index_dir} is a file; name a folder for the dense indexes")
    foreign = _not_from_the_index_writer(root) if root.is_dir() else None
    if foreign is not None:
        raise ChipadaptError(
            f"{key}: {index_dir} is not a folder of dense indexes: {foreign} was not written by the dense index "
            "writer; keep indexes in a folder of their own (a new or empty one)"
        )


def _not_from_the_index_writer(root: Path) -> Path | None:
    """The first thing under `root` that is not part of the dense index layout, or None."""
    for encoder in sorted(root.iterdir()):
        if not encoder.is_dir() or encoder.is_symlink():
            return encoder
        for entry in sorted(encoder.iterdir()):
            name, plain = entry.name, not entry.is_symlink()
            if plain and entry.is_dir() and written_by(entry) == INDEX_WRITER:
                continue
            if plain and name.startswith(".") and (name.endswith(".build.lock") or name.endswith(".tmp")):
                continue
            if plain and entry.is_file() and name in LEGACY_INDEX_FILES:
                continue
            return entry
    return None
