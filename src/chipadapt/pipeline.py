"""The entry behind train.py: check the output folder, then run the configured stage's recipe
(`stage.runner`, one of chipadapt/stages/) inside a recorded job whose manifest says how it ended."""

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.finished_run import completed_record, same_inputs, stopped_after_publishing, what_changed
from chipadapt.io.launch_ranks import other_process_of_a_launch
from chipadapt.io.outputs import check_output_folder
from chipadapt.job import recorded_job
from chipadapt.quiet import silence_known_noise
from chipadapt.run_folder_key import run_folder_key
from chipadapt.trainer_schema import check_trainer_on_this_machine

log = logging.getLogger(__name__)


# Stages whose every input is recorded by content: the starting model and each data source (the attribute
# model's too: stages/attribute_model.py records both). The others (the tokenizer stage decides by its
# `stage.finished_before`, the retriever and reranker read more: finished_run.NOT_PASSED) are trained
# again only with overwrite=true, as before.
RECORDED_STAGES = ("dapt", "sft", "steerlm", "attribute_model")


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
    if recorded is None or not same_inputs(cfg, recorded):
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
    # The other processes of a distributed run take rank 0's answers (stages/rank_0_decision.py): one started
    # after rank 0 took the folder (its lock held, its manifest this attempt's) sees no stopped attempt any more,
    # and only rank 0 publishes. Rank 0 answers once it holds the folder's lock; a refusal before that is their
    # refusal too.
    trains = "module" in cfg.stage
    rank_0_decided = trains and other_process_of_a_launch()
    from chipadapt.stages.rank_0_decision import rank_0_answers
    from chipadapt.stages.resume_decision import resume_checkpoint

    if rank_0_decided:  # rank 0 answers once its checks below have passed: without its answer no process goes on
        resume_checkpoint(cfg, out)
    with rank_0_answers(out, trains and not rank_0_decided) as answer:
        own = None if rank_0_decided else stopped_after_publishing(cfg, out)
        if own is not None:
            resumed = " from its last checkpoint" if (out / "checkpoints" / "last.ckpt").exists() else ""
            log.info(
                "train: %s was published by an earlier attempt of this run that stopped before recording itself "
                "completed (status %s, no live process holds the folder); completing the run%s, model/ published "
                "again",
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
        # Before anything is built or written: a checkpoint of another run is not resumed, nor one that would
        # train no step.
        resumed = resume_checkpoint(cfg, out)
        with recorded_job(cfg, "train", out) as manifest:  # manifest status and the W&B run end with the job
            answer(resumed)  # holding the folder's lock
            return instantiate(cfg.stage.runner)(cfg, out, manifest)
