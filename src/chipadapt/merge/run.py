"""merge.py's job: the merge of merge/merged_folder.py, its evaluation (`eval=[...]`), and their
record in the run folder's manifest.json and the loggers; a sweep job rerun after an interruption
goes on from what it finished instead of merging again."""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.outputs import written_by
from chipadapt.manifest import fingerprint_input
from chipadapt.merge.merged_folder import MODEL_KEYS, input_fingerprints, merge_weights

log = logging.getLogger(__name__)


def merge_models(cfg: DictConfig, replace_own_output: bool = False) -> dict:
    """The merge (and its evaluation, with `eval=[...]`); its summary. `replace_own_output`: this job
    started before and did not complete; when its merged model was published (the evaluation was
    interrupted), it is evaluated as it is, and the tasks that evaluation finished are kept."""
    kept = merged_before(cfg) if replace_own_output else None
    if kept is None:
        out, summary = merge_weights(cfg, replace_own_output)
    else:
        out, summary = kept
        log.info("merge: %s holds this job's merged model; not merged again, its evaluation goes on", out)
    if cfg.eval:
        # Evaluate the merged folder (sweeps compare lambdas on these numbers).
        from chipadapt.eval.run import evaluate_folder, write_results

        results = evaluate_folder(
            out,
            cfg.eval,
            cfg.device,
            Path(cfg.paths.output_dir),
            cfg.eval_model.dtype,
            cfg.eval_model.attn_implementation,
            resume=replace_own_output,
        )
        write_results(results, Path(cfg.paths.output_dir), f"Evaluation of {cfg.merge.name} lam={cfg.merge.lam}")
        manifest = json.loads((out / "merge_manifest.json").read_text())
        write_json_atomic(out / "merge_manifest.json", {**manifest, "evaluation": results})
        summary["evaluation"] = results
    return summary


def merged_before(cfg: DictConfig) -> tuple[Path, dict] | None:
    """(folder, summary) of a merged model this job published before, with exactly these settings
    (merge.py published it whole, so its merge_manifest.json says it is complete); else None."""
    out = Path(cfg.output).expanduser().resolve()
    try:
        recorded = json.loads((out / "merge_manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if written_by(out) != "merge" or recorded.get("config") != OmegaConf.to_container(cfg, resolve=True):
        return None
    # The same settings are not the same inputs: a chip model retrained in place since is merged again.
    if recorded.get("input_fingerprints") != input_fingerprints(cfg):
        return None
    return out, dict(recorded.get("summary") or {})


def previous_job(cfg: DictConfig, run_dir: Path) -> tuple[str, dict | None]:
    """What this run folder already holds of this very job (a sweep rerun after an interruption: a
    preempted SLURM array, reproduce.py resuming a step):
    - ("done", summary): it completed with the same settings and the same input models (by content):
      not merged and evaluated again;
    - ("unfinished", None): it started with the same settings and inputs but did not complete (the
      merged model may be written, its evaluation not): run again, replacing its own output;
    - ("new", None): anything else, including overwrite=true and changed inputs (a retrained chip
      model): the usual checks on the output folder apply."""
    path = run_dir / "manifest.json"
    if cfg.overwrite or not path.is_file():
        return "new", None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return "new", None
    if recorded.get("config") != OmegaConf.to_container(cfg, resolve=True):
        return "new", None
    inputs = recorded.get("inputs") or {}
    for key in MODEL_KEYS:
        if cfg.models.get(key):
            before = (inputs.get(f"models.{key}") or {}).get("fingerprint")
            if before is None or before != fingerprint_input(cfg.models[key])["fingerprint"]:
                return "new", None
    if recorded.get("status") == "completed" and (Path(cfg.output) / "merge_manifest.json").is_file():
        return "done", {**(recorded.get("metrics") or {}), "evaluation": recorded.get("results")}
    return "unfinished", None


def run(cfg: DictConfig) -> dict:
    """merge.py: the merge, recorded in the run folder's manifest.json and sent to the loggers (the
    inputs' and the merged model's fingerprints, the merge summary, the evaluation and its items)."""
    from chipadapt.eval.run import log_results
    from chipadapt.job import recorded_job
    from chipadapt.loggers.job import JobLoggers, numeric_items

    run_dir = Path(cfg.paths.output_dir)
    state, summary = previous_job(cfg, run_dir)
    if state == "done":
        log.info("merge: %s completed before with these settings and inputs; not merged again", run_dir)
        return summary
    if state == "unfinished":
        log.info("merge: %s did not complete before; going on", run_dir)
    with (
        recorded_job(cfg, "merge", run_dir) as manifest,
        JobLoggers(cfg.get("logger"), manifest.data["config"]) as loggers,
    ):
        for key in MODEL_KEYS:
            if cfg.models.get(key):
                manifest.add_input(f"models.{key}", cfg.models[key])
        # An unfinished job of the same settings and inputs replaces its own output.
        summary = merge_models(cfg, replace_own_output=state == "unfinished")
        evaluation = summary.get("evaluation")
        manifest.update("metrics", {k: v for k, v in summary.items() if k != "evaluation"})
        loggers.log_model("output_model", manifest.add_input("output", cfg.output))
        loggers.log_metrics(
            numeric_items({k: v for k, v in summary.items() if k not in ("evaluation", "lam")}, "merge/")
        )
        if evaluation:
            manifest.update("results", evaluation)
            log_results(loggers, evaluation, run_dir)
    return summary
