"""Memory-mapped token cache: each source is tokenized once per (files, tokenizer, settings).

Layout of one entry, `<cache_dir>/<key>/`:
  tokens.npy   uint32, all documents' tokens back to back (no separators: packing adds them)
  offsets.npy  int64, n_docs + 1 boundaries into tokens
  doc_ids.json stable document ids, for held-out splits and provenance
  meta.json    what the key was made of
A sweep or a rerun with the same inputs opens the arrays with mmap and tokenizes nothing.
"""

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt.data.source_spec import SourceSpec, resolve_format, source_files
from chipadapt.data.sources import iter_source, no_documents, tell_skipped
from chipadapt.io.atomic import atomic_directory
from chipadapt.io.hashing import sha256_bytes, sha256_file, sha256_json
from chipadapt.io.lock import cache_entry_lock
from chipadapt.report import while_running

log = logging.getLogger(__name__)

# Bump when the on-disk layout or the tokenization procedure changes. 2: folder sources leave out
# binary files and duplicate links, folders of JSONL files are read as records.
CACHE_VERSION = 2
_BATCH_DOCS = 256


@dataclass
class TokenizedSource:
    tokens: np.ndarray  # uint32 memmap
    offsets: np.ndarray  # int64
    doc_ids: list[str]
    key: str
    built: bool  # False when opened from the cache
    seconds: float

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    def doc_length(self, index: int) -> int:
        return int(self.offsets[index + 1] - self.offsets[index])

    def doc_tokens(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything that decides token ids: the serialized fast tokenizer."""
    return sha256_bytes(tokenizer.backend_tokenizer.to_str().encode())


def cache_key(spec: SourceSpec, key: str, tokenizer_hash: str) -> tuple[str, dict]:
    files = source_files(spec, key)
    root = Path(spec.path)
    fmt = resolve_format(spec, key)
    parts = {
        "version": CACHE_VERSION,
        "format": fmt,
        "text_key": spec.text_key,
        "where": spec.where,
        "files": [[str(f.relative_to(root)) if f != root else f.name, sha256_file(f)] for f in files],
        **(hf_cache_parts(spec, key) if fmt == "hf" else {}),
        "tokenizer": tokenizer_hash,
    }
    # The document limit decides whether a source reads at all: an entry built under a larger limit
    # must not pass a run with a smaller one. In the key only when set, so default entries keep theirs.
    if spec.max_bytes != SourceSpec.max_bytes:
        parts["max_bytes"] = spec.max_bytes
    return sha256_json(parts)[:24], parts


def hf_cache_parts(spec: SourceSpec, key: str) -> dict:
    from chipadapt.io.hf_dataset import dataset_fingerprint

    return {
        "dataset": dataset_fingerprint(spec.path, spec.split, spec.subset, spec.streaming, key),
        "split": spec.split,
        "subset": spec.subset,
    }


def _open(entry: Path, key: str, built: bool, seconds: float) -> TokenizedSource:
    if not built:  # what the build left out, told again on every run that uses the entry
        meta = json.loads((entry / "meta.json").read_text())
        tell_skipped(meta.get("source_key", key), meta.get("source_path", ""), Counter(meta.get("skipped") or {}))
    return TokenizedSource(
        tokens=np.load(entry / "tokens.npy", mmap_mode="r"),
        offsets=np.load(entry / "offsets.npy"),
        doc_ids=json.loads((entry / "doc_ids.json").read_text()),
        key=key,
        built=built,
        seconds=seconds,
    )


def tokenize_source(
    spec: SourceSpec, key: str, tokenizer, cache_dir: str | Path, tokenizer_hash: str | None = None
) -> TokenizedSource:
    """tokenizer_hash: pass tokenizer_fingerprint(tokenizer) when tokenizing many sources (it costs ~40 ms)."""
    start = time.perf_counter()
    digest, parts = cache_key(spec, key, tokenizer_hash or tokenizer_fingerprint(tokenizer))
    entry = Path(cache_dir) / digest
    if not (entry / "meta.json").exists():
        with cache_entry_lock(entry):
            if not (entry / "meta.json").exists():  # else tokenized by another process while this one waited
                return _build(spec, key, tokenizer, entry, digest, parts)
    return _open(entry, digest, built=False, seconds=time.perf_counter() - start)


def _build(spec: SourceSpec, key: str, tokenizer, entry: Path, digest: str, parts: dict) -> TokenizedSource:
    """Tokenize the source into `entry` (the caller holds the entry's lock)."""
    start = time.perf_counter()  # the build alone, not the wait for another job's
    skipped = Counter()
    lengths, chunks, doc_ids, num_chars = _tokenize(spec, key, tokenizer, skipped)
    if not doc_ids:
        raise no_documents(spec, key, skipped)
    offsets = np.zeros(len(doc_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Only now the entry's folder: a source that fails while it is read leaves nothing in the cache.
    with atomic_directory(entry) as tmp:
        # Plain writes, not a memory map: a map over a sparse file meets a full disk as SIGBUS (the process
        # dies without a word); a write raises ENOSPC, which cli.py tells in one line.
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint32)), "fortran_order": False}
        with open(tmp / "tokens.npy", "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {**header, "shape": (int(offsets[-1]),)})
            for chunk in chunks:
                chunk.tofile(handle)
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "doc_ids.json").write_text(json.dumps(doc_ids))
        meta = {
            **parts,
            "num_docs": len(doc_ids),
            "num_tokens": int(offsets[-1]),
            "num_chars": num_chars,
            "skipped": dict(+skipped),
            "source_key": key,
            "source_path": str(spec.path),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    seconds = time.perf_counter() - start
    log.info("tokenized %s: %d docs, %d tokens in %.1fs", key, len(doc_ids), int(offsets[-1]), seconds)
    return _open(entry, digest, built=True, seconds=seconds)


def _tokenize(spec: SourceSpec, key: str, tokenizer, skipped: Counter) -> tuple[list, list, list, int]:
    """(lengths, token arrays, doc ids, characters) of every document. Documents are read and
    tokenized a batch at a time, so a streamed dataset never sits in memory as text; only its token
    ids are kept until they are written."""
    docs = iter_source(spec, key, skipped)
    lengths, chunks, doc_ids, num_chars = [], [], [], 0
    with Progress(
        TextColumn(f"tokenizing {key}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), **while_running()
    ) as bar:
        task = bar.add_task("", total=None)
        while batch := list(islice(docs, _BATCH_DOCS)):
            # Whole documents, longer than the model's context on purpose (packing cuts them into
            # sequences): verbose=False drops transformers' "Token indices sequence length is longer
            # than the specified maximum sequence length" warning, which is about feeding a model.
            ids = tokenizer([d.text for d in batch], add_special_tokens=False, verbose=False)["input_ids"]
            for doc, seq in zip(batch, ids):
                lengths.append(len(seq))
                chunks.append(np.asarray(seq, dtype=np.uint32))
                doc_ids.append(doc.doc_id)
                num_chars += len(doc.text)
            bar.advance(task, len(batch))
    return lengths, chunks, doc_ids, num_chars
