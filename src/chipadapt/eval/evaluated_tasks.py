"""What an evaluation's run folder says it measured, for the comparisons that pair its per-item files.

- Its tasks: those its results name (results.json; the manifest's results where no results.json is there).
  A `<task>_items.jsonl` of a task they do not name was left by another evaluation in that folder (an
  earlier version's rerun with fewer tasks kept it): its figures are nowhere in the run's tables and its
  settings nowhere in its records, so it is not the run's.
- Each task's settings: the run's config of the task (manifest.json's config.eval.<task>), or, for a task
  an earlier run of the folder finished and this one kept without running it (eval/run.py), the settings
  its record holds (tasks/<task>.json). A data file or folder the run recorded reading (the manifest's
  inputs `eval.<task>.<key>`, the record's `inputs`) is compared by its content's fingerprint, not by path.
  A rule the task records in its results rather than its config (same_items.SCORING_RULE: perplexity's
  `first_token: scored`) is one of its settings too; a run from before the task recorded it lacks it.
- Its model: the manifest's model input by fingerprint, and how it was loaded (model.dtype,
  model.attn_implementation).
"""

from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.finished_tasks import RECORDS_FOLDER
from chipadapt.eval.same_items import SCORING_RULE
from chipadapt.eval.task_reruns import recorded_settings
from chipadapt.io.jsonl import json_object

LOADING = ("dtype", "attn_implementation")  # as eval/earlier_evaluation.py: they change a model's answers


def _read(path: Path) -> dict | None:
    try:
        return json_object(path) if path.is_file() else None
    except (ChipadaptError, OSError):
        return None


def manifest(folder: Path) -> dict:
    return _read(Path(folder) / "manifest.json") or {}


def described_tasks(folder: Path) -> set[str] | None:
    """The tasks the run's results name; None where the folder holds no results at all (nothing to say
    which files are the run's: a folder written before results existed pairs as it did)."""
    results = _read(Path(folder) / "results.json")
    if results is None:
        results = manifest(folder).get("results")
    return set(results) if isinstance(results, dict) and results else None


def _scoring_rule(results: object) -> dict:
    """The SCORING_RULE settings a task's results record (none in a run from before they were recorded)."""
    results = results if isinstance(results, dict) else {}
    return {key: results[key] for key in SCORING_RULE if key in results}


def task_settings(folder: Path, task: str) -> dict | None:
    """The settings the run measured `task` with (module docstring), as {dotted key: value}; None where
    the folder records none."""
    recorded = manifest(folder)
    found = ((recorded.get("config") or {}).get("eval") or {}).get(task)
    if isinstance(found, dict):
        prefix = f"eval.{task}."
        inputs = recorded.get("inputs") or {}
        results = _read(Path(folder) / "results.json") or recorded.get("results") or {}
        files = {k[len(prefix) :]: v for k, v in inputs.items() if k.startswith(prefix)}
        settings = recorded_settings({"settings": found, "inputs": files})
        return {**settings, **_scoring_rule(results.get(task))}
    record = _read(Path(folder) / RECORDS_FOLDER / f"{task}.json") or {}
    if isinstance(record.get("settings"), dict):
        settings = recorded_settings(record)
        return {**settings, **_scoring_rule(record.get("results"))}
    return None


def evaluated_model(folder: Path) -> tuple | None:
    """(fingerprint, dtype, attention) of the model the run evaluated; None where it records none."""
    recorded = manifest(folder)
    model = (recorded.get("inputs") or {}).get("model") or {}
    if not model.get("fingerprint"):
        return None
    loading = (recorded.get("config") or {}).get("model") or {}
    return (model["fingerprint"], *(loading.get(key) for key in LOADING))


def same_model(a: Path, b: Path) -> bool:
    """Both runs evaluated the same model files, loaded the same way."""
    found = evaluated_model(a)
    return found is not None and found == evaluated_model(b)
