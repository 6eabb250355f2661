"""merge.py's job: the merge of merge/merged_folder.py, its evaluation (`eval=[...]`), and their
record in the run folder's manifest.json and the loggers; a sweep job rerun after an interruption
goes on from what it finished instead of merging again."""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.outputs import written_by
from chipadapt.manifest import fingerprint_input
from chipadapt.merge.job_settings import changed_settings, same_settings
from chipadapt.merge.output_folder import MODEL_KEYS, check_merge_output
from chipadapt.models.locate import locate_model, names_nothing
from chipadapt.run_folder_key import run_folder_key

log = logging.getLogger(__name__)
NAMED_CHANGES = 5  # changes named in a refusal; more are counted
# (method, base folder) already told that the method does not read models.base: once per process, not
# once per job of a sweep over lambdas.
_UNREAD_BASE_TOLD: set[tuple[str, str]] = set()


def merge_models(cfg: DictConfig, replace_own_output: bool = False) -> dict:
    """The merge (and its evaluation, with `eval=[...]`); its summary. `replace_own_output`: this job
    started before and did not complete; when its merged model was published (the evaluation was
    interrupted), it is evaluated as it is, and the tasks that evaluation finished are kept."""
    from chipadapt.merge.merged_folder import merge_weights

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
    from chipadapt.merge.merged_folder import same_inputs

    out = Path(cfg.output).expanduser().resolve()
    try:
        recorded = json.loads((out / "merge_manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if written_by(out) != "merge" or not same_settings(recorded.get("config") or {}, _resolved(cfg)):
        return None
    # The same settings are not the same inputs: a chip model retrained in place since is merged again.
    if not same_inputs(recorded.get("input_fingerprints"), cfg):
        return None
    return out, dict(recorded.get("summary") or {})


def read_models(cfg: DictConfig) -> list[str]:
    """The keys of `models` this merge reads: chip, instruct, and base where the method reads one. A
    base given to a method that reads none (chipalign, linear, slerp) is said once and left out of the
    job's inputs: recorded, it would claim the merge depended on a folder it never opened, and a base
    of another architecture would seem to have been checked."""
    from chipadapt.merge.merged_folder import models_read

    keys = models_read(cfg)
    base = cfg.models.get("base")
    if base and "base" not in keys and (told := (str(cfg.merge.name), str(base))) not in _UNREAD_BASE_TOLD:
        _UNREAD_BASE_TOLD.add(told)
        log.warning(
            "models.base: merge=%s reads no base model; %s is neither read nor checked (task_arithmetic, ties "
            "and della read one)",
            cfg.merge.name,
            base,
        )
    return keys


def previous_job(cfg: DictConfig, run_dir: Path, keys: list[str]) -> tuple[str, dict | None]:
    """What this run folder already holds of this very job (a sweep rerun after an interruption: a
    preempted SLURM array, reproduce.py resuming a step), the settings compared as job_settings reads
    them (not `overwrite`) and the models read (`keys`) by content:
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
    if not isinstance(recorded, dict) or not same_settings(recorded.get("config") or {}, _resolved(cfg)):
        return "new", None
    inputs = recorded.get("inputs") or {}
    for key in keys:
        before = (inputs.get(f"models.{key}") or {}).get("fingerprint")
        if before is None or before != fingerprint_input(cfg.models[key])["fingerprint"]:
            return "new", None
    if recorded.get("status") == "completed" and (Path(cfg.output) / "merge_manifest.json").is_file():
        return "done", {**(recorded.get("metrics") or {}), "evaluation": recorded.get("results")}
    return "unfinished", None


def check_output_before_recording(cfg: DictConfig, keys: list[str], replace_own_output: bool) -> None:
    """merge_weights' checks of `output`, made before the job records itself: a refused attempt then
    leaves its folders as they were (manifest.json, the loggers' files, and the .hydra/ that Hydra
    rewrote, which run_folder_guard puts back for an attempt that recorded nothing). Refused at the
    merge, the job had already replaced the manifest of the run whose model it refused to replace."""
    inputs = [(f"models.{key}", locate_model(cfg.models[key], f"models.{key}")) for key in keys]
    out = check_merge_output(cfg.output, True, inputs)  # an input, another command's folder, a place not writable
    if cfg.overwrite or replace_own_output or not out.is_dir() or not any(out.iterdir()):
        return
    raise ChipadaptError(
        f"output: {cfg.output} holds a previous merge output{earlier_merge(cfg, out, keys)}; overwrite=true "
        f"replaces it, or another {keeping_both(cfg)} keeps both"
    )


def refuse_output_before_torch(cfg: DictConfig) -> None:
    """check_output_before_recording's refusals that need only the config and the file system (an input
    missing, `output` an input or inside one, another command's folder, a folder or file not merge.py's, a
    place not writable), made before the merge method is built: its class, and with it the rest of the job,
    imports torch (2 CPU-s of a refusal). A refusal only a later check makes (a previous merge output,
    named by how its settings differ) is left to the job, as is a rerun of this run folder (previous_job
    may find it done, with no checks) and an input that is a hub id or a .gguf file (a lookup or a
    conversion)."""
    if not cfg.overwrite and (Path(cfg.paths.output_dir) / "manifest.json").is_file():
        return
    given = [key for key in MODEL_KEYS if cfg.models.get(key)]
    if not all(_found_without_work(cfg.models[key]) for key in given):
        return
    # Whether models.base is an input depends on the method's class (read_models): refused here only where
    # both answers give the same refusal (a models.base the method never reads is no input it may not replace).
    choices = [given, [key for key in given if key != "base"]] if "base" in given else [given]
    refusals = [_output_refusal(cfg, keys) for keys in choices]
    if refusals[0] is not None and all(str(other) == str(refusals[0]) for other in refusals[1:]):
        raise refusals[0]


def _found_without_work(path) -> bool:
    """locate_model reads nothing to find `path`: a folder, a file it refuses, or nothing at all."""
    local = Path(str(path)).expanduser()
    if local.is_file():
        return local.suffix.lower() != ".gguf"
    return local.is_dir() or names_nothing(path)


def _output_refusal(cfg: DictConfig, keys: list[str]) -> ChipadaptError | None:
    """What check_output_before_recording's checks of the inputs and of `output` refuse, with `keys` read."""
    try:
        inputs = [(f"models.{key}", locate_model(cfg.models[key], f"models.{key}")) for key in keys]
        check_merge_output(cfg.output, True, inputs)
    except ChipadaptError as refusal:
        return refusal
    return None


def earlier_merge(cfg: DictConfig, out: Path, keys: list[str]) -> str:
    """What the merged model in `out` is, by its merge_manifest.json, beside this job: `, merged with
    other settings: merge.lam: 1 -> 0.7`, or with other input models; "" where it records nothing."""
    try:
        recorded = json.loads((out / "merge_manifest.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(recorded, dict):
        return ""
    changes = changed_settings(recorded.get("config") or {}, _resolved(cfg))
    if changes:
        more = f" and {len(changes) - NAMED_CHANGES} more" if len(changes) > NAMED_CHANGES else ""
        return f", merged with other settings: {'; '.join(changes[:NAMED_CHANGES])}{more}"
    before = recorded.get("input_fingerprints") or {}
    changed = [f"models.{key}" for key in keys if before.get(key) != fingerprint_input(cfg.models[key])["fingerprint"]]
    if changed:
        return f", merged with these settings from other input models ({', '.join(changed)} changed since)"
    return ", merged with these settings and inputs by another run (not this run folder's)"


def keeping_both(cfg: DictConfig) -> str:
    """The setting that gives this job an output of its own: its run folder's key where `output` is the
    default, inside the run folder, else `output`."""
    out, run_dir = Path(cfg.output).expanduser().resolve(), Path(cfg.paths.output_dir).expanduser().resolve()
    return run_folder_key() if run_dir == out or run_dir in out.parents else "output"


def _resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def run(cfg: DictConfig) -> dict:
    """merge.py: the merge, recorded in the run folder's manifest.json and sent to the loggers (the
    inputs' and the merged model's fingerprints, the merge summary, the evaluation and its items)."""
    from chipadapt.eval.run import log_results
    from chipadapt.job import recorded_job
    from chipadapt.loggers.job import JobLoggers, numeric_items

    run_dir = Path(cfg.paths.output_dir)
    refuse_output_before_torch(cfg)
    keys = read_models(cfg)
    state, summary = previous_job(cfg, run_dir, keys)
    if state == "done":
        log.info("merge: %s completed before with these settings and inputs; not merged again", run_dir)
        return summary
    if state == "unfinished":
        log.info("merge: %s did not complete before; going on", run_dir)
    check_output_before_recording(cfg, keys, replace_own_output=state == "unfinished")
    with (
        recorded_job(cfg, "merge", run_dir) as manifest,
        JobLoggers(cfg.get("logger"), manifest.data["config"]) as loggers,
    ):
        for key in keys:
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
