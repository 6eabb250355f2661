"""What the retriever stage's reusable files are built from (io/built_from.py): the settings that shape
them and their inputs by content, so that a rerun in the same folder with other passage settings, edited
documents, other synthesis settings or another generating model builds them again instead of reusing them."""

from pathlib import Path

from chipadapt.code_versions import REDACTION_VERSION
from chipadapt.data.source_spec import source_files, source_fingerprint, source_spec
from chipadapt.io.hashing import fingerprint_file, sha256_json
from chipadapt.retrieval.passages import Passage

# The versions of the code that builds each file, in its record: a change to what the same settings build
# (section paths, ICT sentences) builds a folder's files again rather than reusing the old ones.
# 2: the section path of a passage that opens with a heading; 3: cleaned (passage_cleaning.py); 4: a file
# of words strung on one line without sentence breaks skipped as machine-like (curation/filters.is_prose),
# so a folder built under 3 with word salad in it is built again; 5: prose in other scripts' full stops
# (Hindi, Urdu, Arabic) and with combining marks (NFD accents) no longer skipped as such a word list. The
# synthetic data and dense indexes key on the passages' content, so they follow whenever the rebuilt passages
# differ.
PASSAGES_BUILDER = 5
SYNTHESIS_BUILDER = 2  # 2: ICT sentences across soft line wraps


def passages_inputs(build: dict) -> dict:
    """`passages.*` with each source's content in place of its local path (the same documents elsewhere
    are the same passages; a file edited in place is not)."""
    sources = {}
    for name, spec in build["sources"].items():
        key = f"passages.sources.{name}"
        local = Path(str(spec.get("path"))).expanduser().exists()
        sources[name] = {
            **{k: v for k, v in spec.items() if not (local and k == "path")},
            "content": source_content(spec, key),
        }
    inputs = {
        "builder": PASSAGES_BUILDER,
        "passages": {**{k: v for k, v in build.items() if k != "sources"}, "sources": sources},
    }
    if build.get("redact"):  # passages redacted by older rules are built again (code_versions.py)
        inputs["redaction"] = REDACTION_VERSION
    return inputs


def source_content(spec: dict, key: str) -> str:
    """A source's documents by content: its files' names (they are in the passage ids) and hashes, or a
    dataset's fingerprint."""
    parsed = source_spec(dict(spec), key)
    root = Path(parsed.path).expanduser()
    files = source_files(parsed, key)
    if files:
        return sha256_json(
            [[str(f.relative_to(root)) if root.is_dir() else f.name, fingerprint_file(f)] for f in files]
        )
    return sha256_json(source_fingerprint(parsed, key))


def synthesis_inputs(syn: dict, bm25: dict, model, passages: list[Passage], seed: int) -> dict:
    """`retriever.synthetic.*`, the BM25 miner's settings, the seed, the passages by content and, where an
    LLM writes the questions (method=llm), that model by content and the precision it runs in."""
    inputs = {
        "builder": SYNTHESIS_BUILDER,
        "retriever": {"synthetic": syn, "bm25": bm25},
        "seed": seed,
        "passages": {"count": len(passages), "content": sha256_json([p.to_json() for p in passages])},
    }
    if syn["method"] == "llm":
        from chipadapt.manifest import fingerprint_input
        from chipadapt.models.hf_folder import resolve_model_folder

        inputs["model"] = {
            "content": fingerprint_input(resolve_model_folder(model))["fingerprint"],
            "dtype": model.get("dtype"),
            "attn_implementation": model.get("attn_implementation"),
        }
    return inputs
