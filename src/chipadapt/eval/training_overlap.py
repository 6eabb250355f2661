"""Which scored documents the evaluated model was trained on.

A perplexity figure on documents the model trained on is in-sample: after DAPT it drops whether or not
the model learnt anything that carries over. The records a model folder leaves say what it trained on:
a DAPT run publishes `RUN/model` beside `RUN/manifest.json` (its corpus sources by resolved path and
fingerprint, and `data.val_fraction`, the hash that held documents out: data/holdout.py); export.py's
folder names its run in `export.json`; merge.py's folder names its inputs in `merge_manifest.json`; and
every training run names the model it started from (`inputs.model`). The walk follows these back to a
model without such records (a downloaded base model, whose own training data no file here describes).

A training source is compared with a scored source when one path is, holds or lies in the other, or
their content fingerprints are equal (a copy); its training documents (the ones its run did not hold
out) are then read as they are now and matched to the scored ones by the hash of their text, so a
document is found whatever its id in either reading.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from chipadapt.data.holdout import held_out_mask
from chipadapt.data.sources import Document, SourceSpec, read_source, source_spec
from chipadapt.errors import ChipadaptError
from chipadapt.io.hashing import fingerprint_file, sha256_json

log = logging.getLogger(__name__)

# The datamodule of stages that train on corpus documents (stage=dapt); SFT, retriever and reward-model
# runs train on conversations or pairs, which no perplexity split reads as documents.
DOCUMENT_DATAMODULES = ("chipadapt.data.datamodule.PretrainDataModule",)
MAX_DEPTH = 16  # runs chained from one another (DAPT -> SFT -> merge ...); a cycle of records ends here


@dataclass(frozen=True)
class TrainedSource:
    run: Path  # the run folder whose manifest.json records the source
    key: str  # data.sources.NAME
    spec: SourceSpec  # as the run read it, at the path its manifest resolved
    fraction: float  # the share held out (data.val_fraction; 0 where the source held none out)
    fingerprint: str | None  # its content when the run read it


def _record(path: Path) -> dict | None:
    """A JSON record a folder carries, or None (absent or unreadable: told, since a check is skipped)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        log.warning("%s: unreadable (%s); what it records is not checked against the scored documents", path, err)
        return None
    return record if isinstance(record, dict) else None


def _run_sources(run: Path, record: dict) -> list[TrainedSource]:
    config = record.get("config") or {}
    stage = config.get("stage") or {}
    if (stage.get("datamodule") or {}).get("_target_") not in DOCUMENT_DATAMODULES:
        return []
    data, inputs = config.get("data") or {}, record.get("inputs") or {}
    found = []
    for name, values in (data.get("sources") or {}).items():
        if not isinstance(values, dict):
            continue
        key = f"data.sources.{name}"
        recorded = inputs.get(key) if isinstance(inputs.get(key), dict) else {}
        try:
            spec = source_spec({**values, "path": recorded.get("path") or values.get("path")}, key)
        except ChipadaptError as err:
            log.warning("%s/manifest.json %s: %s; not checked against the scored documents", run, key, err)
            continue
        fraction = float(data.get("val_fraction") or 0.0) if spec.val_split else 0.0
        found.append(TrainedSource(run, key, spec, fraction, recorded.get("fingerprint")))
    return found


def _train_run_of(folder: Path) -> Path | None:
    """The run folder that trained `folder`: a run's published model/, or the run an export names."""
    exported = _record(folder / "export.json")
    if exported and exported.get("run"):
        return Path(exported["run"])
    if folder.name == "model" and ((_record(folder.parent / "manifest.json") or {}).get("kind")) == "train":
        return folder.parent
    return None


def trained_sources(folder: str | Path) -> tuple[list[TrainedSource], list[Path]]:
    """Every corpus source the model in `folder`, or a model it came from, was trained on; and the runs
    found on the way (none: nothing records how the model was made, and nothing is known)."""
    sources, runs, seen = [], [], set()
    todo = [(Path(folder), 0)]
    while todo:
        current, depth = todo.pop()
        try:
            current = current.resolve()
        except OSError:
            continue
        if current in seen or depth > MAX_DEPTH:
            continue
        seen.add(current)
        merged = _record(current / "merge_manifest.json")
        if merged:  # a merge: each of its inputs in turn
            todo += [(Path(p), depth + 1) for p in (merged.get("inputs") or {}).values() if isinstance(p, str)]
            continue
        run = _train_run_of(current)
        record = _record(run / "manifest.json") if run else None
        if not record:
            continue
        runs.append(run)
        sources += _run_sources(run, record)
        start = ((record.get("inputs") or {}).get("model") or {}).get("path")
        if isinstance(start, str):
            todo.append((Path(start), depth + 1))
    return sources, runs


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _related(trained: TrainedSource, scored: SourceSpec) -> bool:
    """Whether the training source may hold documents of the scored one: the same place, one inside
    the other, or the same content elsewhere."""
    if "hf" in (trained.spec.format, scored.format):  # a dataset by name: the same name and split
        return (trained.spec.path, trained.spec.split) == (scored.path, scored.split)
    a, b = Path(trained.spec.path).resolve(), Path(scored.path).resolve()
    if a == b or a in b.parents or b in a.parents:
        return True
    if not trained.fingerprint:
        return False
    if b.is_file():  # a file's fingerprint holds its name: the copy's content under the trained name
        return sha256_json({a.name: fingerprint_file(b)}) == trained.fingerprint
    if b.is_dir():  # a folder's holds the paths inside it only
        from chipadapt.manifest import fingerprint_input

        return fingerprint_input(b).get("fingerprint") == trained.fingerprint
    return False


def _training_texts(trained: TrainedSource) -> set[str]:
    """Hashes of the texts the run trained on from this source: the documents it did not hold out."""
    docs = read_source(trained.spec, f"{trained.run}/manifest.json {trained.key}")
    mask = held_out_mask([d.doc_id for d in docs], trained.fraction)
    return {text_hash(d.text) for d, held in zip(docs, mask) if not held}


class TrainingOverlap:
    """The training sources of one model folder, and which scored documents they hold."""

    def __init__(self, folder: str | Path | None):
        self.sources, self.runs = trained_sources(folder) if folder else ([], [])
        self._texts: dict[int, set[str]] = {}

    @property
    def known(self) -> bool:
        """Whether any run records what the model was trained on (else nothing can be said)."""
        return bool(self.runs)

    def trained_on(self, scored: SourceSpec, docs: list[Document]) -> tuple[list[bool], list[str]]:
        """Per document of `scored`, whether a training run read it; and which training sources did."""
        flags, where = [False] * len(docs), []
        for index, trained in enumerate(self.sources):
            if not _related(trained, scored):
                continue
            if index not in self._texts:
                try:
                    self._texts[index] = _training_texts(trained)
                except ChipadaptError as err:  # moved or deleted since the run: say it could not be checked
                    log.warning("%s: %s; its documents cannot be compared with the scored ones", trained.key, err)
                    self._texts[index] = set()
            texts = self._texts[index]
            hits = [text_hash(d.text) in texts for d in docs]
            if any(hits):
                where.append(f"{trained.run} {trained.key}")
                flags = [f or h for f, h in zip(flags, hits)]
        return flags, where
