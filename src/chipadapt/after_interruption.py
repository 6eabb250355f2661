"""What a rerun does after an interruption, for the line that ends the interrupted run (cli.py).

Each entry point keeps something else of an interrupted run: training resumes from the checkpoint
the interrupt wrote; an evaluation keeps the tasks and answers it finished; an annotation and a
bootstrap round keep each rating and reply as it is made (steerlm/progress_journal.py); a curation
and a tokenizer build publish their output whole at their end, so a rerun starts them over.
The line said "resumes" for all of them, and a user who waited for an interrupted curation to resume
watched it start again from its first file."""

import sys

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.lock import is_secondary_rank

TRAIN = "chipadapt.pipeline:train"  # entry_point's `target` of train.py, whose stages differ
# Stages that train under Lightning: the interrupt wrote checkpoints/last.ckpt at a step boundary.
TRAINING_STAGES = ("dapt", "sft", "steerlm", "attribute_model", "retriever", "reranker")
# Stages that publish one output at their end: nothing of a stopped one is.
PUBLISHED_WHOLE = ("tokenizer",)
# Stages that journal each rating and sample as it completes (steerlm/progress_journal.py).
JOURNALED = ("annotate", "bootstrap")
# What a rerun in the same folder does, after "a rerun with the same <folder key>".
GOES_ON = {
    "chipadapt.eval.run:run": "keeps the tasks and answers it finished and runs the rest",
    "chipadapt.merge.run:run": "keeps a merged model it published and the evaluation tasks it finished, and does "
    "the rest",
    "chipadapt.reproduce.run:run": "skips the steps that are done and resumes the others",
}
# The rest start over: curation publishes its corpus whole; compare and export redo their short work
# (their outputs may be named by keys other than the run folder's).
CURATION = "chipadapt.curation.run:curate_job"
SHORT = ("chipadapt.eval.compare:compare", "chipadapt.checkpoint_export:run")
CHAT = "chipadapt.chat:run"
UNKNOWN = "what was complete is kept"  # a job not listed here (a test's): only what every job keeps


def rerun_note(target: str, cfg: DictConfig, folder_key: str) -> str:
    """The end of the interruption line of the job `target` run with `cfg`, in the folder `folder_key`
    names (hydra.run.dir, or hydra.sweep.dir in a sweep)."""
    # select: read before the job validates its config, which may still hold a ??? or a bad value
    resumed = OmegaConf.select(cfg, "resume", throw_on_resolution_failure=False) is not False  # None: unset
    same = f"a rerun with the same {folder_key}" + ("" if resumed else " and resume=true")
    starts_over = f"nothing was published, a rerun with the same {folder_key} starts over"
    if target == TRAIN:
        stage = OmegaConf.select(cfg, "stage.name", default=None, throw_on_resolution_failure=False)
        if stage in TRAINING_STAGES:
            return f"what was complete is kept, {same} resumes from its last checkpoint (step 0 if none was written)"
        if stage in JOURNALED:
            return f"the ratings and replies made are kept, {same} (and the same settings) makes only the rest"
        return starts_over if stage in PUBLISHED_WHOLE else UNKNOWN
    if target in GOES_ON:
        return f"what was complete is kept, {same} {GOES_ON[target]}"
    if target == CURATION:
        return starts_over
    if target in SHORT:
        return "a rerun starts over"
    return "the conversation is not kept, a rerun starts a new one" if target == CHAT else UNKNOWN


def say_interrupted(stop: BaseException, rerun: str | None) -> None:
    """The line that ends an interrupted run, from global rank 0 alone: under Lightning's own launcher
    (trainer=ddp without torchrun) every process is stopped by the signal and each said it again."""
    if not is_secondary_rank():
        print(f"chipadapt: interrupted ({stop}); {rerun or UNKNOWN}", file=sys.stderr, flush=True)
