"""A run folder of evaluate.py describes one evaluation: one model, loaded one way.

A rerun in the same `hydra.run.dir` resumes that evaluation (eval/finished_tasks.py keeps its finished
tasks and runs the others, also tasks it never ran; the finished tasks it does not name stay in its
results.json, eval/run.py). Another model there would replace the earlier
model's results.json and manifest.json and leave its per-item files (`<task>_items.jsonl`,
`tasks/<task>.json`), which compare.py would then pair under the new model's name. So, as train.py
does for a changed run in its folder, another model (another path, or the same path with other
files) or another `model.dtype`/`model.attn_implementation` is refused before anything is written,
and `overwrite=true` first removes every file the earlier evaluation wrote, known by the task names
its manifest and task records give and the names evaluate.py gives those files. A run that read no model
(verilog's references_only) records none in its manifest: after it, the model is the one its task records
name (each by its files' content fingerprint, and how it was configured to run; task_reruns.model_changes),
and `overwrite=true` with that model keeps its tasks as with a manifest that names it."""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.errors import ChipadaptError
from chipadapt.eval.finished_tasks import RECORDS_FOLDER, finished_record_model, recorded_tasks, remove_task_files
from chipadapt.eval.items import items_file
from chipadapt.eval.task_reruns import model_changes, model_record

log = logging.getLogger(__name__)

RESULTS = ("results.json", "results.csv")
# How the model is loaded: another dtype or attention kernel gives other numbers. The device is left out:
# a job requeued from a GPU node onto a CPU node goes on with the evaluation (its model tasks run again).
LOADING = ("dtype", "attn_implementation")
RECORD_ENDS = (".json", ".answers.jsonl")  # a task's record and its answers journal under tasks/


def earlier_manifest(out: Path) -> dict | None:
    """The manifest of the evaluation this folder holds (any status: an interrupted one has finished
    tasks too); None for none, or another command's."""
    try:
        recorded = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) and recorded.get("kind") == "evaluate" else None


def earlier_tasks(out: Path, recorded: dict) -> set[str]:
    """The tasks of the earlier evaluation that left files here: those its config selected or its
    results name, and those with a task record."""
    names = set((recorded.get("config") or {}).get("eval") or {}) | set(recorded.get("results") or {})
    names |= recorded_tasks(out)
    return {name for name in names if has_files(out, name)}


def has_files(out: Path, name: str) -> bool:
    records = out / RECORDS_FOLDER
    return items_file(out, name).is_file() or any((records / f"{name}{end}").is_file() for end in RECORD_ENDS)


def model_settings(model: dict | None, loading: dict) -> dict[str, object]:
    """What names the evaluated model: its folder, its files' fingerprint and how it is loaded."""
    model = model or {}
    return {
        "model.path": model.get("path"),
        "model files (fingerprint)": (model.get("fingerprint") or "")[:12] or None,
        **{f"model.{key}": loading.get(key) for key in LOADING},
    }


def current_model(cfg: DictConfig) -> dict | None:
    """The model this run evaluates, recorded as the manifest records it; None where it cannot be
    resolved (a run of tasks that need no model may name none: evaluate_folder reports it if one does)."""
    from chipadapt.manifest import fingerprint_input
    from chipadapt.models.hf_folder import resolve_model_folder

    try:
        return fingerprint_input(resolve_model_folder(cfg.model))  # memoised: the manifest's record reads it
    except ChipadaptError:
        return None


def current_running(cfg: DictConfig) -> dict[str, object] | None:
    """The model this run evaluates as a task record names it (task_reruns.model_record): its files and
    how it runs; None where it cannot be resolved (as `current_model`)."""
    from chipadapt.models.hf_folder import resolve_model_folder
    from chipadapt.models.inference import inference_settings

    try:
        folder = resolve_model_folder(cfg.model)
    except ChipadaptError:
        return None
    running = inference_settings(cfg.model.dtype, cfg.model.attn_implementation, cfg.device)
    return model_record(folder, running, cfg.model.attn_implementation)


def records_of_another_model(cfg: DictConfig, out: Path, tasks: set[str]) -> list[str] | None:
    """Where the manifest names no model (its run read none: verilog's references_only): the tasks whose
    record names a model other than this run's, or loaded otherwise (task_reruns.model_changes), each
    with what changed; [] where every record that names a model names this one; None where none names one,
    or this run's model cannot be resolved (nothing to compare: the tasks keep their own keys, and a model
    task runs again on another). The model is resolved only where a record names one."""
    recorded = {name: found for name in sorted(tasks) if (found := finished_record_model(out, name)) is not None}
    if not recorded:
        return None
    now = current_running(cfg)
    if now is None:
        return None
    from chipadapt.stages.resume_settings import describe  # train's wording of a changed run

    changed = []
    for name, before in recorded.items():
        if changes := model_changes(before, now):
            shown = [describe([what], {what: was}, {what: is_now})[0] for what, was, is_now in changes]
            changed.append(f"{name}: {'; '.join(shown)}")
    return changed


def check_earlier_evaluation(cfg: DictConfig, out: Path, key: str) -> list[str] | None:
    """Refuse, before anything is written, to evaluate another model, or the model loaded another way,
    in a folder holding an evaluation (`key` names the folder's config key), unless `cfg.overwrite`.
    With overwrite=true, the earlier evaluation's tasks, for `clear_earlier_evaluation`; else None."""
    recorded = earlier_manifest(out)
    if recorded is None:
        return None
    tasks = earlier_tasks(out, recorded)
    if not tasks and not any((out / name).is_file() for name in RESULTS):
        return None  # it left nothing (stopped before its first task)
    model = (recorded.get("inputs") or {}).get("model")
    if not model:
        # A run that read no model records none in its manifest; the tasks an earlier run here measured on
        # a model still name it in their records, and another model must not replace their results.
        others = records_of_another_model(cfg, out, tasks)
        if cfg.overwrite:
            # The same model keeps its tasks, as below; none to compare: cleared as asked.
            return None if others == [] else sorted(tasks)
        if others:
            raise ChipadaptError(
                f"{key}: {out} holds an evaluation of another model or loading (tasks/{'; tasks/'.join(others)}); "
                "overwrite=true replaces it (its results and per-item files), or give this evaluation its own folder"
            )
        return None
    current = current_model(cfg)
    if current is None:
        # No model evaluated before, or none to compare now: its tasks keep their own keys; overwrite=true
        # cannot tell the same model, so it clears as asked.
        return sorted(tasks) if cfg.overwrite else None
    before = model_settings(model, (recorded.get("config") or {}).get("model") or {})
    now = model_settings(current, cfg.model)
    changed = [name for name in before if before[name] != now[name]]
    if changed and cfg.overwrite:
        return sorted(tasks)
    if changed:
        from chipadapt.stages.resume_settings import describe  # train's wording of a changed run

        raise ChipadaptError(
            f"{key}: {out} holds an evaluation of another model or loading "
            f"({'; '.join(describe(changed, before, now))}); overwrite=true replaces it (its results and "
            "per-item files), or give this evaluation its own folder"
        )
    # The same model: its finished tasks are kept and its half-done ones resume (a requeued `overwrite=true`
    # line keeps its work); resume=false redoes them.
    return None


def clear_earlier_evaluation(out: Path, tasks: list[str]) -> None:
    """overwrite=true: the earlier evaluation's results and its tasks' files go, so that the folder
    holds this evaluation only (the manifest and the loggers' files are this run's already)."""
    log.info("overwrite=true: removing the earlier evaluation in %s (%s)", out, ", ".join(tasks) or "results")
    for name in tasks:
        remove_task_files(out, name)
    for name in RESULTS:
        (out / name).unlink(missing_ok=True)
    from chipadapt.retrieval.misses import is_misses_file

    for path in out.glob("*.md"):  # eval=retrieval's misses (misses_file's default is in this folder)
        if is_misses_file(path):
            path.unlink()
