"""Retrievers behind one interface: BM25 (bm25s), dense (faiss inner product), hybrid (score fusion).

retriever.index(passages); hits = retriever.search(queries, k)   # [[(passage_id, score), ...], ...]
"""

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.io.hashing import fingerprint_file
from chipadapt.io.lock import cache_entry_lock
from chipadapt.retrieval.encoder import TextEncoder, resolve_encoder_folder
from chipadapt.retrieval.index_partials import remove_stale_partials
from chipadapt.retrieval.passages import Passage

log = logging.getLogger(__name__)

Hits = list[list[tuple[str, float]]]
# The command named in the marker of each index entry (io/outputs.py): retrieval/build.py recognises an
# index_dir by it.
INDEX_WRITER = "chipadapt"
# Letters and digits: identifiers such as `global_placement` and `set_wire_rc` split at the
# underscores, so that a question that says "global placement" matches them.
TOKEN_PATTERN = r"(?u)[^\W_]{2,}"
# Passages embedded between saves of a cached index's build: a build killed after thousands of passages
# resumes from its last saved part, not from zero; a part costs one .npy write (3 MB at 768 dimensions).
EMBED_PART = 1024


def read_expansions(path: str | Path) -> dict[str, list[str]]:
    """passage id -> queries written for it, from a Tevatron training file (`query`, `positive_passages`
    [{docid}]) or a queries file (`query`, `positive_ids`), e.g. stage=retriever's synthetic/train.jsonl."""
    from chipadapt.io.jsonl import jsonl_records

    expansions: dict[str, list[str]] = {}
    for lineno, record in jsonl_records(Path(path), missing=f"bm25.expansion: {path} does not exist"):
        ids = record.get("positive_ids") or [p.get("docid") for p in record.get("positive_passages") or []]
        if not isinstance(record.get("query"), str) or not ids:
            raise ChipadaptError(
                f"{path}:{lineno}: an expansion needs 'query' and 'positive_passages' or 'positive_ids'"
            )
        for pid in ids:
            expansions.setdefault(str(pid), []).append(record["query"])
    return expansions


class BM25Retriever:
    """`context`: index each passage's title and section path with its text (`Passage.indexed_text`).
    `expansion` (doc2query): a file of queries written for passages (see `read_expansions`); they
    are appended to their passage's indexed text, so BM25 also matches the words people ask with."""

    def __init__(
        self,
        k1: float,
        b: float,
        stemmer: str | None,
        stopwords: str | None,
        context: bool,
        expansion: str | None = None,
    ):
        self.k1, self.b, self.stopwords, self.context = k1, b, stopwords, context
        self.expansions = read_expansions(expansion) if expansion else {}
        self.stemmer = None
        if stemmer:
            import Stemmer

            self.stemmer = Stemmer.Stemmer(stemmer)

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(
            texts, token_pattern=TOKEN_PATTERN, stopwords=self.stopwords, stemmer=self.stemmer, show_progress=False
        )

    def index(self, passages: list[Passage]) -> None:
        import bm25s

        self.ids, self.indexed = [p.id for p in passages], passages
        texts = [" ".join([p.indexed_text(self.context), *self.expansions.get(p.id, [])]) for p in passages]
        self.bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        self.bm25.index(self._tokenize(texts), show_progress=False)

    def search(self, queries: list[str], k: int) -> Hits:
        k = min(k, len(self.ids))
        docs, scores = self.bm25.retrieve(self._tokenize(queries), k=k, show_progress=False, n_threads=1)
        return [
            [(self.ids[int(d)], float(s)) for d, s in zip(row_d, row_s) if s > 0] for row_d, row_s in zip(docs, scores)
        ]


class DenseRetriever:
    """Exact inner-product search over normalised embeddings (cosine). `index_dir` caches the index.
    `search`: faiss (CPU), torch (a matrix product on the encoder's device), auto (torch on a GPU).
    `context`: embed each passage's title and section path with its text (`Passage.indexed_text`)."""

    def __init__(
        self,
        encoder_path: str | None,
        encoder_package: str | None,
        pooling: str,
        query_prefix: str,
        passage_prefix: str,
        max_query_tokens: int,
        max_passage_tokens: int,
        batch_size: int,
        search: str,
        context: bool,
        device: str = "auto",
        index_dir: str | None = None,
    ):
        self.folder = resolve_encoder_folder(encoder_path, encoder_package)
        self.encoder = TextEncoder(
            self.folder, pooling, query_prefix, passage_prefix, max_query_tokens, max_passage_tokens
        )
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder.to(device).eval()
        if search not in ("auto", "faiss", "torch"):
            raise ChipadaptError(f"dense.search: {search!r} is not one of auto, faiss, torch")
        # auto: a torch matrix product on the GPU when the encoder runs there, faiss on the CPU otherwise.
        self.search_device = device if search == "torch" or (search == "auto" and device != "cpu") else None
        self.torch_index, self.context = None, context
        self.batch_size, self.index_dir = batch_size, Path(index_dir) if index_dir else None

    def _fingerprint(self, passages: list[Passage]) -> dict:
        digest = hashlib.sha256()
        for p in passages:
            digest.update(p.id.encode() + b"\0" + p.indexed_text(self.context).encode() + b"\0")
        # Every weight file (a sharded encoder's too): an encoder retrained at the same path must
        # not meet the index of its old weights.
        weights = {p.name: fingerprint_file(p) for p in self.folder.glob("*.safetensors")}
        return {
            "passages": digest.hexdigest(),
            "count": len(passages),
            "encoder": str(self.folder),
            "encoder_weights": dict(sorted(weights.items())),
            "pooling": self.encoder.pooling,
            "prefix": self.encoder.passage_prefix,
            "max_tokens": self.encoder.max_tokens[False],
        }

    def index(self, passages: list[Passage]) -> None:
        self.ids, self.indexed = [p.id for p in passages], passages
        if not self.index_dir:
            self._embed(passages)
            return
        fingerprint = self._fingerprint(passages)
        # One folder per fingerprint: jobs over other passages (or another encoder state) keep their
        # own index beside this one rather than rebuilding it in turn, and do not wait on its lock.
        entry = self.index_dir / hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        if self._load(entry, fingerprint):
            return
        with cache_entry_lock(entry):
            if self._load(entry, fingerprint):  # built by another process while this one waited
                return
            log.info("building the dense index of %d passages at %s", len(passages), entry)
            if (self.index_dir / "index.faiss").is_file():  # one index per encoder, before e89f4c5 (2026-12-06)
                log.info(
                    "%s holds an index in an earlier layout, no longer read: delete it to free the space",
                    self.index_dir / "index.faiss",
                )
            partial = entry.with_name(f".{entry.name}.partial.tmp")  # hidden .tmp: check_index_dir lets it be
            started = time.time()
            self._embed(passages, partial, fingerprint)
            self.save(entry, fingerprint)
            shutil.rmtree(partial, ignore_errors=True)  # its parts are in the published index now
        # Other fingerprints' cut-off builds no later build resumes (passages or encoder changed since).
        remove_stale_partials(self.index_dir, partial, fingerprint, started)

    def _load(self, entry: Path, fingerprint: dict) -> bool:
        """Open the cached index when it was built from these passages with this encoder."""
        import faiss

        stamp = entry / "index.json"
        if not stamp.is_file() or json.loads(stamp.read_text()) != fingerprint:
            return False
        self.faiss_index = faiss.read_index(str(entry / "index.faiss"))
        log.info("dense index loaded from %s", entry)
        self._to_device(self.faiss_index.reconstruct_n(0, self.faiss_index.ntotal))
        return True

    def _embed(self, passages: list[Passage], partial: Path | None = None, fingerprint: dict | None = None) -> None:
        """Embed `passages` into a flat index; with `partial` (a cached index's build), in parts saved there
        and resumed from it when the build was cut off (`_embed_in_parts`)."""
        import faiss

        # Said in the log too: the bar is off where no terminal shows it, and this can take minutes.
        if self.index_dir:
            log.info("dense index: embedding %d passages (kept in %s for the next run)", len(passages), self.index_dir)
        else:
            log.info("dense index: embedding %d passages (not kept: set index_dir to reuse it)", len(passages))
        texts = [p.indexed_text(self.context) for p in passages]
        if partial is None:
            vectors = self.encoder.encode(
                texts, is_query=False, batch_size=self.batch_size, progress=f"embedding {len(passages)} passages"
            )
        else:
            vectors = self._embed_in_parts(texts, partial, fingerprint)
        self.faiss_index = faiss.IndexFlatIP(vectors.shape[1])
        self.faiss_index.add(vectors)
        self._to_device(vectors)

    def _embed_in_parts(self, texts: list[str], partial: Path, fingerprint: dict) -> np.ndarray:
        """The embeddings of `texts`, EMBED_PART at a time, each part saved in `partial` as it is done; parts a
        killed build of the same fingerprint saved there are read, not embedded again."""
        partial.mkdir(parents=True, exist_ok=True)
        stamp = partial / "index.json"
        if stamp.is_file() and json.loads(stamp.read_text()) != fingerprint:  # a 16-hex-digit name shared
            for old in partial.glob("part-*.npy"):
                old.unlink()
        write_json_atomic(stamp, fingerprint)
        parts, resumed = [], 0
        for start in range(0, len(texts), EMBED_PART):
            chunk, file = texts[start : start + EMBED_PART], partial / f"part-{start:09d}.npy"
            if file.is_file():
                part = np.load(file)
                if part.shape[0] == len(chunk):
                    parts.append(part)
                    resumed += len(chunk)
                    continue
            end = start + len(chunk)
            part = self.encoder.encode(
                chunk,
                is_query=False,
                batch_size=self.batch_size,
                progress=f"embedding passages {start + 1}-{end} of {len(texts)}",
            )
            tmp = file.with_name(file.name + ".tmp")  # written whole, then renamed: a part is complete or absent
            with open(tmp, "wb") as out:
                np.save(out, part)
            os.replace(tmp, file)
            parts.append(part)
        if resumed:
            log.info("dense index: %d of %d passages read from the build cut off at %s", resumed, len(texts), partial)
        return np.concatenate(parts) if parts else np.zeros((0, self.encoder.dim), dtype=np.float32)

    def _to_device(self, vectors: np.ndarray) -> None:
        if self.search_device is not None:
            from chipadapt.retrieval.torch_search import TorchFlatIndex

            self.torch_index = TorchFlatIndex(vectors, self.search_device)

    def save(self, dest: Path, fingerprint: dict) -> None:
        import faiss

        with atomic_directory(dest, INDEX_WRITER) as tmp:
            faiss.write_index(self.faiss_index, str(tmp / "index.faiss"))
            write_json_atomic(tmp / "ids.json", self.ids)
            write_json_atomic(tmp / "index.json", fingerprint)

    def search(self, queries: list[str], k: int) -> Hits:
        vectors = self.encoder.encode(queries, is_query=True, batch_size=self.batch_size)
        scores, rows = (self.torch_index or self.faiss_index).search(vectors, min(k, len(self.ids)))
        return [[(self.ids[r], float(s)) for r, s in zip(row_r, row_s) if r >= 0] for row_r, row_s in zip(rows, scores)]


FUSIONS = ("minmax", "rrf")


def fusion_scores(hits: list[tuple[str, float]], fusion: str, rrf_k: int) -> dict[str, float]:
    """One retriever's hits as fusable scores: reciprocal rank, or scores min-max-normalised to [0, 1]."""
    if fusion == "rrf":
        return {pid: 1.0 / (rrf_k + rank + 1) for rank, (pid, _) in enumerate(hits)}
    if not hits:
        return {}
    values = np.array([s for _, s in hits])
    span = values.max() - values.min()
    return {pid: float((s - values.min()) / span) if span > 0 else 1.0 for pid, s in hits}


def fuse(
    sparse_hits: list[tuple[str, float]],
    dense_hits: list[tuple[str, float]],
    fusion: str,
    weight: float,
    rrf_k: int,
    k: int,
) -> list[tuple[str, float]]:
    """The top k of weight * dense + (1 - weight) * sparse, over the union of both candidate lists."""
    sparse, dense = fusion_scores(sparse_hits, fusion, rrf_k), fusion_scores(dense_hits, fusion, rrf_k)
    fused = {pid: weight * dense.get(pid, 0.0) + (1 - weight) * sparse.get(pid, 0.0) for pid in {*sparse, *dense}}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


class HybridRetriever:
    """Fuse a sparse and a dense retriever: weighted min-max-normalised scores, or reciprocal rank.
    `only` ("sparse" or "dense") answers with one part alone: the fallback when fusion chosen on
    dev questions does not beat its better part there (eval/tasks/retrieval.py)."""

    def __init__(self, sparse, dense, weight: float, fusion: str, depth: int, rrf_k: int = 60):
        if fusion not in FUSIONS:
            raise ChipadaptError(f"hybrid.fusion: {fusion!r} is not one of {', '.join(FUSIONS)}")
        self.sparse, self.dense, self.weight, self.fusion, self.depth, self.rrf_k = (
            sparse,
            dense,
            weight,
            fusion,
            depth,
            rrf_k,
        )
        self.only: str | None = None
        self.reuses_parts = False

    def index(self, passages: list[Passage]) -> None:
        # The parts are often also compared on their own, already indexed over these passages.
        self.reuses_parts = all(getattr(part, "indexed", None) is passages for part in (self.sparse, self.dense))
        for part in (self.sparse, self.dense):
            if getattr(part, "indexed", None) is not passages:
                part.index(passages)

    def search(self, queries: list[str], k: int) -> Hits:
        if self.only is not None:
            return {"sparse": self.sparse, "dense": self.dense}[self.only].search(queries, k)
        return [
            fuse(sparse_hits, dense_hits, self.fusion, self.weight, self.rrf_k, k)
            for sparse_hits, dense_hits in zip(
                self.sparse.search(queries, self.depth), self.dense.search(queries, self.depth)
            )
        ]
