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

A run that left out of training the copies of its validation texts under other ids (data/holdout.py: its
manifest records `data.val_duplicates_dropped`) did not train on them: the texts held out of any of its
sources and those of its `data.val_sources` are taken off its training texts. Not for a run from before
that rule, nor for one resumed across it (`data.training_order.changes_on_resume`: it trained on the
copies before the resume). A validation source that cannot be read now is told and taken off nothing:
counting a document as trained on that was not is the safe side of the error.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from chipadapt.data.holdout import held_out_mask
from chipadapt.data.source_spec import SourceSpec, source_spec
from chipadapt.data.sources import Document, read_source
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
    # Whether the run left out of training the documents whose text is a validation one's under another
    # id (module docstring), and its validation-only sources (data.val_sources.NAME, spec), whose texts
    # it left out too.
    drops_copies: bool = False
    val_specs: tuple[tuple[str, SourceSpec], ...] = ()


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
    drops_copies = _dropped_copies_throughout(record.get("data") or {})
    val_specs = tuple((key, spec) for key, spec, _ in _specs(run, data.get("val_sources"), inputs, "data.val_sources"))
    found = []
    for key, spec, recorded in _specs(run, data.get("sources"), inputs, "data.sources"):
        fraction = float(data.get("val_fraction") or 0.0) if spec.val_split else 0.0
        found.append(TrainedSource(run, key, spec, fraction, recorded.get("fingerprint"), drops_copies, val_specs))
    return found


def _dropped_copies_throughout(data: dict) -> bool:
    """Whether the run's every step left out the copies of its validation texts: it counted them
    (`val_duplicates_dropped`, recorded since that rule) and was not resumed onto another training order
    (a checkpoint from before the rule trained on them up to the resumed step)."""
    order = data.get("training_order")
    resumed_onto_another = isinstance(order, dict) and bool(order.get("changes_on_resume"))
    return "val_duplicates_dropped" in data and not resumed_onto_another


def _specs(run: Path, sources, inputs: dict, section: str) -> list[tuple[str, SourceSpec, dict]]:
    """(key, spec at the path the run resolved, its inputs record) of each source of a config section."""
    found = []
    for name, values in (sources or {}).items():
        if not isinstance(values, dict):
            continue
        key = f"{section}.{name}"
        recorded = inputs.get(key) if isinstance(inputs.get(key), dict) else {}
        try:
            spec = source_spec({**values, "path": recorded.get("path") or values.get("path")}, key)
        except ChipadaptError as err:
            log.warning("%s/manifest.json %s: %s; not checked against the scored documents", run, key, err)
            continue
        found.append((key, spec, recorded))
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


def _split_texts(trained: TrainedSource) -> tuple[set[str], set[str]]:
    """Hashes of the texts of this source's documents the run did not hold out, and of those it did."""
    docs = read_source(trained.spec, f"{trained.run}/manifest.json {trained.key}")
    mask = held_out_mask([d.doc_id for d in docs], trained.fraction)
    hashes = [text_hash(d.text) for d in docs]
    return {t for t, h in zip(hashes, mask) if not h}, {t for t, h in zip(hashes, mask) if h}


def _validated_texts(run_sources: list[TrainedSource]) -> set[str]:
    """Hashes of the texts one run validated on: held out of any of its sources, or of its data.val_sources.
    The run left their copies under other ids out of training (TrainedSource.drops_copies). A source that
    cannot be read now is told and adds none: its copies then count as trained on (module docstring)."""
    texts = set()
    for trained in run_sources:
        try:
            texts |= _split_texts(trained)[1]
        except ChipadaptError as err:
            log.warning("%s: %s; copies of its held-out documents count as trained on", trained.key, err)
    run = run_sources[0].run if run_sources else None
    for key, spec in run_sources[0].val_specs if run_sources else ():
        try:
            texts |= {text_hash(d.text) for d in read_source(spec, f"{run}/manifest.json {key}")}
        except ChipadaptError as err:
            log.warning("%s: %s; copies of its documents count as trained on", key, err)
    return texts


def _training_texts(trained: TrainedSource, validated: set[str]) -> set[str]:
    """Hashes of the texts the run trained on from this source: the documents it did not hold out, less
    the copies of a validation text it left out (`validated`: the run's _validated_texts, or none)."""
    return _split_texts(trained)[0] - validated


class TrainingOverlap:
    """The training sources of one model folder, and which scored documents they hold."""

    def __init__(self, folder: str | Path | None):
        self.sources, self.runs = trained_sources(folder) if folder else ([], [])
        self._texts: dict[int, set[str]] = {}
        self._validated: dict[Path, set[str]] = {}

    def _validated_by(self, run: Path) -> set[str]:
        if run not in self._validated:
            self._validated[run] = _validated_texts([s for s in self.sources if s.run == run])
        return self._validated[run]

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
                validated = self._validated_by(trained.run) if trained.drops_copies else set()  # never raises
                try:
                    self._texts[index] = _training_texts(trained, validated)
                except ChipadaptError as err:  # moved or deleted since the run: say it could not be checked
                    log.warning("%s: %s; its documents cannot be compared with the scored ones", trained.key, err)
                    self._texts[index] = set()
            texts = self._texts[index]
            hits = [text_hash(d.text) in texts for d in docs]
            if any(hits):
                where.append(f"{trained.run} {trained.key}")
                flags = [f or h for f, h in zip(flags, hits)]
        return flags, where
