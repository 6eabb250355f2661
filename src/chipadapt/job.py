"""One job of any entry point (train, evaluate, merge, chat, reproduce): its manifest.json, closed
with the status the job ended with, and its W&B run ended with it — also when the job fails, so the
next job of a multirun starts a run of its own."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from chipadapt.interrupts import Interrupted
from chipadapt.io.disk_full import disk_full_error
from chipadapt.io.lock import run_folder_lock
from chipadapt.loggers.checks import check_logger_config
from chipadapt.loggers.job_end import finish_job_loggers
from chipadapt.manifest import RunManifest


@contextmanager
def recorded_job(cfg: DictConfig, kind: str, out: str | Path) -> Iterator[RunManifest]:
    # Before the job's first work and its manifest: a bad logger setting is one line, not a traceback
    # where the loggers are built (in training, once the model and data are loaded).
    check_logger_config(cfg)
    # One process per run folder: a second command in the same hydra.run.dir stops here with one
    # line naming the holder, before it writes anything.
    with run_folder_lock(out):
        manifest = RunManifest(out, cfg, kind)
        try:
            yield manifest
        except Interrupted as stop:
            manifest.finish("interrupted", error=f"stopped by {stop}")
            finish_job_loggers(succeeded=False)
            raise
        except BaseException as err:
            try:
                manifest.finish("failed", error=f"{type(err).__name__}: {err}")
            except OSError:
                if disk_full_error(err) is None:
                    raise
                # The disk that stopped the job cannot take the manifest either: it still says "running",
                # which compare.py and reproduce.py read as not finished; the job's own error is raised.
            finish_job_loggers(succeeded=False)
            raise
        manifest.finish("completed")
        finish_job_loggers(succeeded=True)
