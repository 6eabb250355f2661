"""evaluate.py: run the selected tasks (`eval=[...]`) on one model folder; results.json + CSV + table."""

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.table import Table

from chipadapt.errors import ChipadaptError
from chipadapt.eval.finished_tasks import RECORDS_FOLDER, FinishedTasks
from chipadapt.eval.items import is_uncertainty_key, write_items
from chipadapt.eval.steering import prompts_written, start_steering, steering_key, steering_label, stop_steering
from chipadapt.eval.task_reruns import STALE_FOLDER
from chipadapt.io.answer_journal import recording
from chipadapt.io.atomic import write_json_atomic, write_text_atomic
from chipadapt.models.inference import inference_settings, load_for_inference
from chipadapt.protocols import EvalTask
from chipadapt.report import console, no_interval, why_no_interval

log = logging.getLogger(__name__)


def evaluate_folder(
    folder,
    tasks: DictConfig,
    device: str,
    items_dir: Path | None,
    dtype: str,
    attn_implementation: str,
    resume: bool,
    record_input: Callable[[str, str], object] | None = None,
) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} for every task config in `tasks` (name -> _target_ config); with
    `items_dir`, each task's per-item records go to `<items_dir>/<task>_items.jsonl` (eval/items.py).

    `folder` may be a callable that returns it: the model is only resolved (and built) when a task needs
    one, with `dtype` and `attn_implementation` (evaluate.py passes model.dtype/model.attn_implementation).
    `resume` (with `items_dir`): tasks this folder finished before with the same settings and model are
    kept, not run again (eval/finished_tasks.py); each task is recorded there as it completes, and a
    task killed half-way keeps the answers its model had given (io/answer_journal.py).
    `record_input(key, path)` is told every task's data files (`eval.<task>.<key>`) before any task runs."""
    if not tasks:
        raise ChipadaptError("eval: no task selected (e.g. eval=[perplexity,mcq,ifeval])")
    built = {name: instantiate(task_cfg) for name, task_cfg in tasks.items()}  # config errors before loading
    for name, task in built.items():
        if not isinstance(task, EvalTask):
            raise ChipadaptError(
                f"eval.{name}: {type(task).__name__} is not an evaluation task (needs_model, items, run)"
            )
        task.name = name  # its progress bar and lines say chip_mcq, not the class's mcq
    inputs = {name: {} for name in built}  # {task: {key: the manifest's record of the file}}, for its record
    if record_input is not None:
        for name, task in built.items():
            for key, path in getattr(task, "inputs", list)():
                recorded = record_input(f"eval.{name}.{key}", local_data_path(path))
                if isinstance(recorded, dict):
                    inputs[name][key] = recorded
    if any(task.needs_model for task in built.values()):
        folder = folder() if callable(folder) else folder
    running = inference_settings(dtype, attn_implementation, device)
    # Each task's finished record and key with the steering only where it generates chat replies
    # (eval/steering.py): perplexity keeps its result whatever generate.attributes says. The record keeps
    # the attention as configured too: `auto` on another node is the same measurement.
    records = (
        {
            name: FinishedTasks(items_dir, {**running, **steering_key(task)}, attn_implementation)
            for name, task in built.items()
        }
        if items_dir
        else {}
    )
    finished = next(iter(records.values()), None)
    keys, measured = {}, {}
    if finished is not None:
        for name, task in built.items():
            used = folder if task.needs_model else None
            keys[name] = records[name].key(tasks[name], used)
            # As the task starts, with its key and its journal's: a model folder rewritten while the task
            # runs would otherwise lend its new identity to the old content's answers, which a later run
            # (another judge) would take as the new content's.
            measured[name] = records[name].measured_with(tasks[name], used, inputs[name])
    # A finished task measured here with other settings (another data file, references_only) is replaced
    # by this run's results: said as a warning, and its record and per-item file are kept aside.
    replacing = {name: records[name].changed_settings(name, measured[name]) for name in records}
    kept = {}
    if resume and finished is not None:
        kept = {
            name: r
            for name in built
            if (r := records[name].load(name, keys[name], replacing=bool(replacing[name]))) is not None
        }
    model = tokenizer = None
    if any(task.needs_model for name, task in built.items() if name not in kept):
        loaded = load_for_inference(folder, dtype, attn_implementation, device)
        model, tokenizer = loaded.model, loaded.tokenizer
    results = {}
    for name, task in built.items():
        if name in kept:
            results[name] = kept[name]
            continue
        if replacing.get(name):
            log.warning(
                "%s: finished in this folder before with other settings (%s); running it again, its results "
                "replace those in results.json, and its earlier record and per-item file are kept in %s/%s",
                name,
                "; ".join(replacing[name]),
                RECORDS_FOLDER,
                STALE_FOLDER,
            )
        start, written, taken = time.perf_counter(), prompts_written(), None
        if finished is not None and task.needs_model:
            journal = records[name].answers(
                name, tasks[name], folder, model, reuse=resume, key=measured[name]["answers_key"]
            )
            with recording(journal):
                results[name] = task.run(model, tokenizer)
            taken = journal.recorded_results if journal.took_recorded else None
        else:
            results[name] = task.run(model, tokenizer)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        results[name].update(steering_label(task, written, taken))  # the attributes its prompts took, if any
        if getattr(task, "references_only", False):
            # Figures of the reference solutions, not of a model: said where they are read (results.json,
            # the manifest, the table), since a model's results of the task have the same names.
            results[name]["references_only"] = True
        if finished is not None:
            if replacing.get(name):
                records[name].set_aside(name)
            # The finished run's record stays until the new one replaces it: a failure in between (a kill, a
            # full disk) keeps what it recorded, and its digest of the per-item file tells it from new items.
            if task.items is not None:
                write_items(items_dir, name, task.items)
            records[name].save(name, keys[name], results[name], task.items is not None, measured[name])
        log.info("%s: %s", name, results[name])
    return results


def local_data_path(path: str) -> str:
    """Where a task's data path lies on disk: `hf:FOLDER[:SPLIT]` is its folder (a hub id stays a name,
    recorded without a fingerprint)."""
    from chipadapt.io.hf_dataset import PREFIX, SPLIT

    text = str(path)
    return SPLIT.match(text[len(PREFIX) :])["path"] if text.startswith(PREFIX) else text


def flat_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested metrics (retrieval: retriever -> metric) as dotted names, without the keys that say
    how sure each is (`<metric>_stderr`, `_ci`, `_n`, `_ci_method`: see `metric_rows`)."""
    return [(name, value) for name, value, *_ in metric_rows(metrics, prefix)]


def metric_rows(metrics: dict, prefix: str = ""):
    """(dotted name, value, stderr, ci_lo, ci_hi, n) per metric; blanks where a value has no interval
    (counts, timings)."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from metric_rows(value, f"{prefix}{key}.")
        elif not is_uncertainty_key(key):
            lo, hi = metrics.get(f"{key}_ci") or ("", "")
            yield f"{prefix}{key}", value, metrics.get(f"{key}_stderr", ""), lo, hi, metrics.get(f"{key}_n", "")


def interval_methods(metrics: dict, prefix: str = "") -> dict[str, str]:
    """{dotted name: `_ci_method`} of the metrics metric_rows yields: what says why one has no interval."""
    methods = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            methods |= interval_methods(value, f"{prefix}{key}.")
        elif not is_uncertainty_key(key):
            methods[f"{prefix}{key}"] = metrics.get(f"{key}_ci_method")
    return methods


def figure(x: float) -> str:
    """A table's number: 4 decimals, or 4 significant digits past 1e9 (a diverged model's perplexity of
    6.7e293 is not 294 digits); inf as inf."""
    return f"{x:.4e}" if math.isfinite(x) and abs(x) >= 1e9 else f"{x:.4f}"


def interval_cell(lo, hi, n, method) -> str:
    """The table's 95% interval: `[lo, hi]` (an unbounded end as -inf/+inf, a finite one kept); where none
    was given, why (the first clause of `_ci_method`: `interval n/a: every item at the same value, 0.5`),
    else too few by n; blank for a figure that has no interval (counts, timings)."""
    if lo != "":
        ends = [figure(x) if x is not None and math.isfinite(x) else side for x, side in ((lo, "-inf"), (hi, "+inf"))]
        return f"[{ends[0]}, {ends[1]}]"
    if n == "":
        return ""
    return why_no_interval(method) or no_interval(n)


def write_results(results: dict, out: Path, title: str) -> None:
    write_json_atomic(out / "results.json", results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["task", "metric", "value", "stderr", "ci95_lo", "ci95_hi", "n"])
    for task, metrics in results.items():
        for row in metric_rows(metrics):
            writer.writerow([task, *row])
    write_text_atomic(out / "results.csv", buffer.getvalue())
    table = Table(title=title)
    for column in ("task", "metric", "value", "95% interval", "n"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task, metrics in results.items():
        methods = interval_methods(metrics)
        for metric, value, _, lo, hi, n in metric_rows(metrics):
            table.add_row(
                task,
                metric,
                figure(value) if isinstance(value, float) else str(value),
                interval_cell(lo, hi, n, methods[metric]),
                str(n),
            )
    console.print(table)


def run(cfg: DictConfig) -> dict:
    from chipadapt.quiet import silence_known_noise

    silence_known_noise()
    if not cfg.get("eval"):  # before the run folder records anything: there would be nothing to run
        raise ChipadaptError(
            "eval: no task selected; name at least one, e.g. eval=[perplexity,mcq] (the tasks are conf/eval/*.yaml)"
        )
    from chipadapt.eval.earlier_evaluation import check_earlier_evaluation, clear_earlier_evaluation
    from chipadapt.loggers.checks import check_logger_config
    from chipadapt.run_folder_key import run_folder_key

    out = Path(cfg.paths.output_dir)
    # Before this run's manifest replaces the earlier one: the folder holds one model's evaluation.
    earlier = check_earlier_evaluation(cfg, out, run_folder_key())
    check_logger_config(cfg)  # said first, as the job says it: two mistakes come out in the order they did
    refuse_a_missing_model(cfg)
    # After the checks above: the model loader imports torch and transformers (seconds of a refusal).
    from chipadapt.job import recorded_job
    from chipadapt.loggers.job import JobLoggers
    from chipadapt.models.hf_folder import resolve_model_folder

    if earlier is not None and (cfg.get("logger") or {}).get("wandb"):
        # overwrite=true over another model's evaluation: a W&B run of its own, not the earlier model's
        # run continued with this model's results logged over its history.
        with open_dict(cfg):
            cfg.logger.wandb.continue_run = False
    with (
        recorded_job(cfg, "evaluate", out) as manifest,
        JobLoggers(cfg.get("logger"), manifest.data["config"]) as loggers,
    ):
        if earlier is not None:  # overwrite=true, under the folder's lock
            clear_earlier_evaluation(out, earlier)
        stop_steering()  # a job of a sweep whose tasks need no model does not inherit the last job's attributes

        def model_folder() -> Path:
            folder = resolve_model_folder(cfg.model)
            loggers.log_model("evaluated_model", manifest.add_input("model", folder))
            start_steering(cfg, folder)  # generate.attributes for a SteerLM model (eval/steering.py)
            return folder

        results = evaluate_folder(
            model_folder,
            cfg.eval,
            cfg.device,
            out,
            cfg.model.dtype,
            cfg.model.attn_implementation,
            cfg.resume,
            record_input=manifest.add_input,
        )
        # The folder's results.json describes every per-item file beside it: the tasks an earlier run here
        # finished (the same model: check_earlier_evaluation) and this one did not name stay, with the
        # settings their records hold (compare.py pairs them with those, eval/evaluated_tasks.py).
        earlier_tasks = kept_earlier_results(cfg, out, set(cfg.eval))
        written = {**results, **earlier_tasks}
        title = f"Evaluation ({', '.join(cfg.eval)}{'; earlier: ' + ', '.join(earlier_tasks) if earlier_tasks else ''})"
        write_results(written, out, title)
        manifest.update("results", written)
        log_results(loggers, results, out)  # the earlier tasks' metrics were logged by their own runs
    return written


def refuse_a_missing_model(cfg: DictConfig) -> None:
    """model.path naming nothing, or a folder whose weights are only a pickle, refused before the run
    records itself and before the loggers and the model loader are imported (Lightning and transformers:
    about 5 CPU-s), as the job refuses it once a task asks for the model. The tasks are built only then:
    a run whose tasks read no model (eval=[retrieval]) is not refused for it, and a task's own config
    error, said first in the job, is said first here too."""
    from chipadapt.eval.steering import KEY as STEERING_KEY
    from chipadapt.io.jsonl import json_object
    from chipadapt.models.locate import locate_model, names_nothing
    from chipadapt.models.safe_load import require_safetensors
    from chipadapt.models.whole_model_folder import require_config_json

    path = cfg.model.get("path")
    if not path:
        return
    folder = Path(str(path)).expanduser()
    missing = names_nothing(path)
    # With generate.attributes the job reads the folder's SteerLM record before its weights, and may refuse
    # that first: left to the job. So is a hub id or a .gguf file (a lookup or a conversion).
    if not missing and (not folder.is_dir() or OmegaConf.select(cfg, STEERING_KEY, default=None)):
        return
    try:
        if missing:
            locate_model(path, "model.path")
        # The job's checks of the folder, in its order: config.json (check_hf_folder), then the weights.
        require_config_json(folder, "model.path")
        json_object(folder / "config.json", "model.path")
        require_safetensors(folder, "model.path")
    except ChipadaptError:
        tasks = [instantiate(task_cfg) for task_cfg in cfg.eval.values()]
        if all(isinstance(task, EvalTask) for task in tasks) and any(task.needs_model for task in tasks):
            raise


def kept_earlier_results(cfg: DictConfig, out: Path, selected: set[str]) -> dict[str, dict]:
    """{task: results} of the tasks an earlier run of `out` finished on this model and this run did not
    select (FinishedTasks.earlier_results), said in one line."""
    from chipadapt.models.hf_folder import resolve_model_folder

    def model() -> Path | None:
        # Resolved only for a kept record that names a model: a model named by a .gguf file or a hub id is
        # converted or fetched there, which a run that read no model and keeps no model's task does not do.
        try:
            return resolve_model_folder(cfg.model)
        except ChipadaptError:  # no model named: only the tasks that needed none can be this model's
            return None

    running = inference_settings(cfg.model.dtype, cfg.model.attn_implementation, cfg.device)
    kept = FinishedTasks(out, running, cfg.model.attn_implementation).earlier_results(selected, model)
    if kept:
        log.info(
            "results.json keeps %s, finished in an earlier run of this folder with the settings in tasks/<task>.json "
            "(not run again; a new hydra.run.dir evaluates only the tasks named)",
            ", ".join(kept),
        )
    return kept


def log_results(loggers, results: dict, out: Path) -> None:
    """Every numeric metric as `<task>/<metric>`, and each task's per-item file as a table."""
    from chipadapt.loggers.job import numeric_items

    loggers.log_metrics(numeric_items(results))
    loggers.log_item_tables(out)
