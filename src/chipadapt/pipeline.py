"""The entry behind train.py: check the output folder, then run the configured stage's recipe
(`stage.runner`, one of chipadapt/stages/) inside a recorded job whose manifest says how it ended."""

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.finished_run import completed_record, stopped_after_publishing, what_changed
from chipadapt.io.lock import is_secondary_rank
from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.io.outputs import check_output_folder
from chipadapt.job import recorded_job
from chipadapt.manifest import fingerprint_input
from chipadapt.quiet import silence_known_noise
from chipadapt.run_folder_key import run_folder_key
from chipadapt.trainer_schema import check_trainer_on_this_machine

log = logging.getLogger(__name__)


# Stages whose every input is recorded by content: the starting model and each data source. The others
# (the tokenizer stage decides by its `stage.finished_before`, the retriever and reranker read more) are
# trained again only with overwrite=true, as before.
RECORDED_STAGES = ("dapt", "sft", "steerlm")


def finished_before(cfg: DictConfig, out: Path) -> dict | None:
    """The metrics of this very run when `out` holds it completed: the same settings (the resolved
    config), the same inputs by content (each data source and the model the config names now, and every
    input recorded), its model/ in place. A sweep rerun after an interruption (a preempted SLURM array, a
    killed Optuna search) so passes the jobs that finished instead of refusing their model/; merge.py
    does the same. None otherwise, and always with overwrite=true. With an augmented tokenizer the run
    started from the build the current inputs key to (`DomainTokenizer.build_folder`: the base model's
    files, the corpus and the settings), as recorded; the base model is compared through that key."""
    if cfg.stage.get("name") not in RECORDED_STAGES:
        return None
    recorded = completed_record(cfg, out)
    if recorded is None:
        return None
    inputs = recorded.get("inputs") or {}
    named = [
        (f"data.{section}.{name}", source.path)
        for section in ("sources", "val_sources")
        for name, source in (cfg.data.get(section) or {}).items()
        if source and source.get("path")
    ]
    from chipadapt.models.hf_folder import resolve_model_folder

    build_folder = getattr(instantiate(cfg.tokenizer.adapt), "build_folder", None)
    if build_folder is not None:  # tokenizer=augmented: the recorded model is the build
        model = inputs.get("model")
        if not isinstance(model, dict) or str(build_folder(resolve_model_folder(cfg.model)).resolve()) != model.get(
            "path"
        ):
            return None
    elif cfg.model.get("path"):
        named.append(("model", cfg.model.path))
    for key, current in named:  # what the config names now, as it resolves now
        record = inputs.get(key)
        if not isinstance(record, dict) or fingerprint_input(current)["fingerprint"] != record.get("fingerprint"):
            return None
    for record in inputs.values():
        # add_input's records ({path, fingerprint, files}); other entries of the section are descriptive
        if isinstance(record, dict) and {"path", "fingerprint"} <= record.keys():
            if fingerprint_input(record["path"])["fingerprint"] != record["fingerprint"]:
                return None
    return recorded.get("metrics") or {}


# What a passed rerun says of the stages that train nothing.
NOT_AGAIN = {"annotate": "not annotated again", "bootstrap": "not sampled again", "tokenizer": "not built again"}


def train(cfg: DictConfig) -> dict:
    silence_known_noise()  # before the output checks and the loggers start
    out = Path(cfg.paths.output_dir)
    metrics = (instantiate(hook) if (hook := cfg.stage.get("finished_before")) else finished_before)(cfg, out)
    if metrics is not None:
        again = NOT_AGAIN.get(cfg.stage.name, "not trained again")
        log.info("train: %s completed before with these settings and inputs; %s", out, again)
        return metrics
    # Here, in the process that trains (a SLURM login node that only submits the job has no GPU), and
    # before the data is prepared and the model loaded: a GPU asked of a CPU machine stops in seconds.
    check_trainer_on_this_machine(cfg.trainer)
    # The run's own model/, published by an attempt killed before it recorded itself completed: the
    # requeue of the same command completes the run (resumes its last checkpoint, publishes again).
    own = stopped_after_publishing(cfg, out)
    # A secondary process of a distributed run started after rank 0 took the folder (its lock held, its
    # manifest this attempt's) sees no stopped attempt any more: rank 0 decided, and only rank 0 publishes.
    rank_0_decided = is_secondary_rank() and folder_lock_held(out) is True
    if own is not None and not is_secondary_rank():
        resumed = " from its last checkpoint" if (out / "checkpoints" / "last.ckpt").exists() else ""
        log.info(
            "train: %s was published by an earlier attempt of this run that stopped before recording itself "
            "completed (status %s, no live process holds the folder); completing the run%s, model/ published again",
            out / "model",
            own.get("status"),
            resumed,
        )
    # Before the manifest of this attempt replaces the last one: a finished model/ is replaced only
    # with overwrite=true, a model/ that train.py did not write never, nor a folder holding model.path.
    check_output_folder(
        out / "model",
        "train",
        run_folder_key(),
        bool(cfg.overwrite) or own is not None or rank_0_decided,
        [("model.path", cfg.model.path)] if cfg.model.get("path") else [],
        previous="" if cfg.overwrite else what_changed(cfg, out),
    )
    from chipadapt.stages.resume_decision import resume_checkpoint, resumes

    if resumes(cfg, out):  # before anything is built or written: a checkpoint of another run is not resumed
        resume_checkpoint(cfg, out)
    with recorded_job(cfg, "train", out) as manifest:  # manifest status and the W&B run end with the job
        return instantiate(cfg.stage.runner)(cfg, out, manifest)
