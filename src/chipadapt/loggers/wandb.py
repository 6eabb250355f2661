"""Lightning's WandbLogger with the run named, grouped, typed and tagged after the Hydra job, and one
W&B run per run folder.

Settings left null in conf/logger/wandb.yaml (name, group, job_type) come from the job (see
`identity.job_identity`); a value set there wins. Ending the run is the job's business
(`finish_wandb_run`, called however the job ends), because Lightning's `finalize` does not end it
and the next job of a multirun in the same process would otherwise log into this run.

The run folder keeps its W&B run id (`wandb/chipadapt-run-id`): a resume after a kill or a
preemption, and a rerun of evaluate.py or merge.py in the same folder, continue that run (W&B's
`resume="allow"`, which Lightning passes) instead of leaving a crashed run beside a second one of the
same name. A run started over (`resume=false`) gets a new id, and so a new W&B run: its history
starts over too."""

import logging
import os
import re
import secrets
import string
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from chipadapt.io.atomic import write_text_atomic
from chipadapt.loggers.identity import job_identity

log = logging.getLogger(__name__)

RUN_ID_FILE = "chipadapt-run-id"  # in the W&B folder of the run folder (`<run>/wandb/`)
# What W&B accepts as a run id (no `/ \ # ? % :`), so a damaged file is never sent to it.
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# W&B's folder of each process that logged: `offline-run-20261203_213014-abc123xy[-1]/run-abc123xy.wandb`
# (`-1`: a second process of the same run started within the same second).
_RUN_FOLDER = re.compile(r"(?:offline-)?run-(\d{8}_\d{6})-.+")
_RUN_LOG = re.compile(r"run-([A-Za-z0-9_-]+)\.wandb")


def folder_run_id(folder: str | Path, new: bool = False) -> str:
    """The W&B run id of the run in `folder` (its `wandb/` holds the runs): the recorded one, else that
    of the latest W&B run there (a folder from before ids were recorded), else a new one; `new`
    always starts a new one. The id is recorded before W&B starts, so a run killed at once still
    hands it to its rerun."""
    wandb_dir = Path(folder) / "wandb"
    record = wandb_dir / RUN_ID_FILE
    if not new:
        try:
            recorded = record.read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            recorded = ""
        if _RUN_ID.fullmatch(recorded):
            return recorded
        if recorded:
            log.warning("%s does not hold a W&B run id; this run gets a new one", record)
        else:
            found = sorted(  # by start time: online and offline runs alike
                (named.group(1), run_log.group(1))
                for entry in (wandb_dir.iterdir() if wandb_dir.is_dir() else ())
                if (named := _RUN_FOLDER.fullmatch(entry.name)) and entry.is_dir() and not entry.is_symlink()
                for log_file in entry.glob("run-*.wandb")
                if (run_log := _RUN_LOG.fullmatch(log_file.name))
            )
            if found:
                return _record(record, found[-1][1])
    alphabet = string.ascii_lowercase + string.digits  # W&B's own ids look the same
    return _record(record, "".join(secrets.choice(alphabet) for _ in range(8)))


def _record(path: Path, run_id: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, run_id + "\n")
    return run_id


def model_tag(name: str | None, path: str | None) -> str | None:
    """What names the model a run used: the folder's name when `model.path` gives one (a training
    run's output `RUN/model` by its run folder, RUN), else the model config's name."""
    if not path:
        return name
    folder = Path(str(path).rstrip("/\\"))
    return folder.parent.name if folder.name == "model" and folder.parent.name else folder.name


def tag_list(tags: str | Iterable[str | None] | None) -> list[str]:
    """`logger.wandb.tags=abc` is one tag, not three; empty ones (an entry point without a stage or a
    merge method) are dropped; W&B takes at most 64 characters a tag."""
    if isinstance(tags, str):
        tags = [tags]
    return sorted({str(tag)[:64] for tag in tags or () if tag})


def models_used(config: Mapping, llm_tag: str | None) -> list[str | None]:
    """The models a job's config (the whole resolved one) has it use, as tags. The retriever stage trains
    an encoder, and reads `model` (an LLM, `llm_tag`) only to write synthetic questions
    (retriever.synthetic.method=llm, no retriever.train_file): an ICT run was tagged with an LLM it never
    loaded, and not with its encoder. Other jobs: `llm_tag`, the model config's."""
    stage = config.get("stage")
    retriever = config.get("retriever")
    if not (isinstance(stage, Mapping) and stage.get("name") == "retriever" and isinstance(retriever, Mapping)):
        return [llm_tag]
    encoder = retriever.get("encoder") or {}
    used = [model_tag(encoder.get("package"), encoder.get("path"))]
    synthetic = retriever.get("synthetic") or {}
    if not retriever.get("train_file") and synthetic.get("method") == "llm":
        used.append(llm_tag)
    return used


class JobWandbLogger(WandbLogger):
    def __init__(
        self,
        *,
        name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        tags: str | Iterable[str | None] | None = (),
        model_name: str | None = None,
        model_path: str | None = None,
        continue_run: bool = True,
        **kwargs,
    ):
        job = job_identity()
        self._given_tags, self._model_tag = tag_list(tags), model_tag(model_name, model_path)
        super().__init__(
            name=name or job.name,
            group=group or job.group,
            job_type=job_type or job.job_type,
            tags=tag_list([*self._given_tags, self._model_tag]) or None,
            **kwargs,
        )
        self._continue_run = continue_run

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        # The job's whole config (logged before anything else starts the W&B run) says which models the
        # run uses; the model config alone named the LLM of every job, a retriever's too.
        if self._experiment is None and isinstance(params, Mapping) and "stage" in params:
            used = models_used(params, self._model_tag)
            self._wandb_init["tags"] = tag_list([*self._given_tags, *used]) or None
        super().log_hyperparams(params, *args, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self):
        # Decided when W&B starts (rank 0 only), not when the logger is built on every rank: one id,
        # written by one process. An id set in the config (`logger.wandb.id`) is used as it is.
        if self._experiment is None and not self._wandb_init.get("id") and self._save_dir:
            fresh = not self._continue_run or runs_offline(self._offline)
            self._id = self._wandb_init["id"] = folder_run_id(self._save_dir, new=fresh)
        return WandbLogger.experiment.fget(self)


def runs_offline(offline: bool | None) -> bool:
    """Whether W&B writes offline (the setting, or WANDB_MODE). Offline, W&B ignores `resume`: each
    attempt is an `offline-run-*` folder, and `wandb sync` of a second folder with the same id replaces
    the first one's history (wandb issues 3841, 5865). So an offline attempt gets an id of its own,
    with the job's name and group; online, a resumed attempt continues the folder's run."""
    return bool(offline) or os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")


def finish_wandb_run(succeeded: bool) -> None:
    """End this process's W&B run, if one was started (wandb imported and a run live); called however a
    job ends (loggers/job_end.py)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=0 if succeeded else 1)
