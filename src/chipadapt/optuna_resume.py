"""Which RUNNING trials of a stored study a search process runs again (optuna_search.StudySweeper): several
processes may share one study (Optuna's way to search in parallel), and a trial another process runs, or
may still run, must not run twice. Each search process holds a claim lock while its trials run (search_claim),
and a trial it runs again is locked for as long as it runs (resumable)."""

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.optuna_results import FOLDER

log = logging.getLogger(__name__)
CLAIM = "chipadapt_claim"  # a trial's user attribute: the lock its search process holds (search_claim)
# In the sweep folder: one locked folder per search process (search_claim), one per trial run again (resumable)
CLAIMS = ".optuna_searches"
# A trial's user attribute: whether its jobs ran inside the search process (Hydra's basic launcher), so that
# they died with it. submitit (hydra/launcher=slurm) does not cancel its queued jobs when the search dies.
JOBS_HERE = "chipadapt_jobs_in_search_process"


def left_to_its_process(trial: optuna.trial.FrozenTrial, sweep_dir: Path) -> str | None:
    """Why a RUNNING trial is not this invocation's to run again, or None to run it again in its folder.
    Several processes may share one stored study (Optuna's way to search in parallel): a trial another
    process runs, or may still run, must not run twice. Run again only where its jobs ran inside the search
    process that asked for it (JOBS_HERE: Hydra's basic launcher), which holds its claim no more (killed:
    its jobs ended with it), and no live process holds its folder. A job another launcher submitted
    (hydra/launcher=slurm) outlives the search, and a free folder lock does not say it is gone (requeued,
    or queued still): left alone, as a trial stored without the record is."""
    folder = trial.user_attrs.get(FOLDER)
    if folder and folder_lock_held(folder):
        return f"a live process holds {folder}"
    claim = trial.user_attrs.get(CLAIM)
    searcher = folder_lock_held(claim) if claim else None
    if searcher:
        return f"the search process that asked for it still runs (it holds {claim}; its job may wait in a queue)"
    if folder and not Path(folder).is_relative_to(sweep_dir):
        parent = Path(folder).parent
        return f"it runs in {folder}, another sweep folder (hydra.sweep.dir={parent} resumes it if it was killed)"
    if trial.user_attrs.get(JOBS_HERE) is False:
        return (
            "its job was submitted by a launcher that runs jobs outside the search process (hydra/launcher=slurm),"
            " which does not cancel them when the search dies: it may still be queued or requeued (if it is not,"
            " mark the trial failed in the study to run it again)"
        )
    if trial.user_attrs.get(JOBS_HERE) is None:
        return (
            "the study does not record where its job ran (a trial stored by an earlier chipadapt), so whether it"
            " still runs cannot be told (if it does not, mark the trial failed in the study to run it again)"
        )
    if searcher is None:
        return f"no lock tells whether the search process that asked for it still runs ({claim or 'none recorded'})"
    return None


@contextmanager
def search_claim(sweep_dir: Path, stored: bool) -> Iterator[str | None]:
    """A lock this search process holds while its trials run, recorded on each (CLAIM): a later process on
    the study tells from it whether a RUNNING trial whose job never took its folder's lock is still this
    process's (its job queued, or about to start) or was left by a killed one. Kept after the search, as
    every lock file is (removing one another process may be probing is racy). None for an in-memory study,
    which no other process sees."""
    if not stored:
        yield None
        return
    import os
    import socket
    import uuid

    from chipadapt.io.lock import run_folder_lock

    folder = sweep_dir / CLAIMS / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with run_folder_lock(folder):
        yield str(folder)


def resumable(study: optuna.Study, number: int, sweep_dir: Path, held: ExitStack) -> optuna.trial.FrozenTrial | None:
    """The RUNNING trial `number`, where this process is to run it again (left_to_its_process), its lock
    (<sweep dir>/.optuna_searches/trial-<number>) taken into `held` for as long as it runs: two processes
    that both find it resumable do not both run it. Looked at again once the lock is taken."""
    from chipadapt.errors import ChipadaptError
    from chipadapt.io.lock import run_folder_lock

    try:
        held.enter_context(run_folder_lock(sweep_dir / CLAIMS / f"trial-{number}"))
    except ChipadaptError:  # another search process holds it: it runs it again
        log.warning("trial #%d is RUNNING and left alone: another search process is running it again", number)
        return None
    trial = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    if trial.state != TrialState.RUNNING:  # finished by the process that held the lock before
        return None
    why = left_to_its_process(trial, sweep_dir)
    if why:
        log.warning("trial #%d is RUNNING and left alone: %s", number, why)
        return None
    return trial


def runs_jobs_here(launcher: Any) -> bool:
    """Whether the launcher runs the jobs inside this process (Hydra's basic launcher), so they end with it.
    By the class's name, not isinstance: Hydra's plugin discovery may import its plugin modules again, and a
    launcher made from the earlier module's class is then no instance of the later one's."""
    return any(
        cls.__name__ == "BasicLauncher" and cls.__module__ == "hydra._internal.core_plugins.basic_launcher"
        for cls in type(launcher).__mro__
    )
