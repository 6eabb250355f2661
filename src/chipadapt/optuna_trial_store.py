"""Writing to one trial of a stored study by its number (optuna_search.StudySweeper): its user attributes,
and its end, told once even where another process on the study finished it meanwhile."""

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from chipadapt.optuna_results import FOLDER

log = logging.getLogger(__name__)


def record_folder(study: optuna.Study, number: int, folder: Path) -> None:
    record(study, number, FOLDER, str(folder))


def record(study: optuna.Study, number: int, key: str, value: Any) -> None:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    study._storage.set_trial_user_attr(trial_id, key, value)


def finished_meanwhile(study: optuna.Study, number: int) -> bool:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return study._storage.get_trial(trial_id).state.is_finished()


def tell(study: optuna.Study, number: int, values: list[float]) -> None:
    """Tell a trial's values, unless another process finished the trial meanwhile (it took the trial for
    interrupted: only a trial whose folder nobody held, so rarely): said, not a crash."""
    try:
        if not finished_meanwhile(study, number):
            study.tell(number, values=values)
            return
    except RuntimeError:  # finished between the look and the tell
        if not finished_meanwhile(study, number):
            raise
    log.warning(
        "trial #%d was finished by another process meanwhile: this run's value %s is not stored", number, values
    )


def fail(study: optuna.Study, number: int) -> None:
    if not finished_meanwhile(study, number):
        try:
            study.tell(number, state=TrialState.FAIL)
        except RuntimeError:
            if not finished_meanwhile(study, number):
                raise
