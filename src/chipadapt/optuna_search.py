"""Hydra's Optuna sweeper with a study that stays one search (conf/hydra/sweeper/chipadapt_optuna.yaml;
the plugin class is hydra_plugins/chipadapt_search, where Hydra requires sweepers to be).

The plugin's sweeper joins any stored study of the same name whatever its settings, numbers its jobs from 0
on every invocation (so a rerun's folder 0 holds an earlier trial of other parameters), leaves the trials a
killed invocation was running RUNNING for ever, and reports Optuna's first best trial only. Here:
- a stored study whose trials ran with other fixed overrides, another search space or direction is refused
  before the first trial (each study records its settings in its user attributes), and so is a sweep folder
  holding another study's trial folders;
- job folders are numbered by trial number, so a rerun of the same command continues the study (n_trials is
  the study's total), and a trial left RUNNING by a killed job (its folder lock free) is run again with its
  own parameters in its own folder (its checkpoint resumes), and so is one whose job never took its folder's
  lock once the search process that asked for it is gone (search_claim), where that process ran its jobs
  itself (the basic launcher); one another process runs, or may still run (a queued SLURM job), is left to it;
- a trial whose job refused its input is marked failed, not left RUNNING, and its batch-mates are told what
  their own folders say (optuna_trial_outcome.py); an interrupted batch stays RUNNING, to resume;
- a seeded sampler is reseeded by the number of trials already stored, so it does not draw its start-up
  trials again;
- optimization_results.yaml names the tied best trials, the runner-up and their paired difference
  (optuna_results.py)."""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState

from chipadapt.io.lock_probe import folder_lock_held
from chipadapt.optuna_results import FOLDER, report
from chipadapt.optuna_trial_outcome import Launched, batch_outcomes, launch_time
from chipadapt.optuna_trial_store import fail, record, record_folder, recorded_folder, tell
from chipadapt.run_folder_guard import refuse

log = logging.getLogger(__name__)
SETTINGS = "chipadapt_settings"  # the study's user attribute: what its trials ran with
STUDY_RECORD = "optuna_study.json"  # in the sweep folder: the study whose trials its numbered folders hold
# Trials that ran with the study's settings: a trial failed at its start (bad input, exit 2) ran with none.
RAN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
CLAIM = "chipadapt_claim"  # a trial's user attribute: the lock its search process holds (search_claim)
CLAIMS = ".optuna_searches"  # in the sweep folder: one locked folder per search process (search_claim)
# A trial's user attribute: whether its jobs ran inside the search process (Hydra's basic launcher), so that
# they died with it. submitit (hydra/launcher=slurm) does not cancel its queued jobs when the search dies.
JOBS_HERE = "chipadapt_jobs_in_search_process"


def search_settings(directions: list[str], space: dict, fixed: dict) -> dict:
    """What makes two invocations one search: the direction, each searched key's distribution and each
    fixed override (a trial's folder depends on all of them)."""
    return {
        "direction": [str(d).lower() for d in directions],
        "space": {k: json.loads(distribution_to_json(v)) for k, v in sorted(space.items())},
        "fixed": {k: str(v) for k, v in sorted(fixed.items())},
    }


def trial_settings(trial: optuna.trial.FrozenTrial, directions: list[str]) -> dict:
    """The settings of a trial stored before studies recorded theirs (its user attributes are its fixed overrides)."""
    fixed = {k: v for k, v in trial.user_attrs.items() if not k.startswith("chipadapt_")}
    return search_settings(directions, trial.distributions, fixed)


def first_difference(stored: dict, wanted: dict) -> str | None:
    """`optim.lr: tag(...)` style: the first setting in which the stored study differs, or None."""
    if stored["direction"] != wanted["direction"]:
        return f"direction {stored['direction']} (this search: {wanted['direction']})"
    for part, what in (("fixed", "fixed override"), ("space", "searched key")):
        for key in sorted({*stored[part], *wanted[part]}):
            before, now = stored[part].get(key), wanted[part].get(key)
            if before != now:
                return f"{what} {key}: {_said(before)} in the study, {_said(now)} in this search"
    return None


def _said(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, dict):  # a distribution: its name and bounds
        return f"{value.get('name')}{json.dumps(value.get('attributes'), sort_keys=True)}"
    return str(value)


def check_study(study: optuna.Study, wanted: dict, name: str) -> None:
    """Refuse a stored study whose trials ran with other settings, naming the first one that differs. Only
    trials that ran count: a study whose trials all failed at their start (bad input) takes the new settings."""
    ran = [t for t in study.trials if t.state in RAN]
    recorded = study.user_attrs.get(SETTINGS)
    stored = [recorded] if recorded else [trial_settings(t, wanted["direction"]) for t in ran if t.params]
    for settings in stored if ran else []:
        why = first_difference(settings, wanted)
        if why:
            refuse(
                f"hydra.sweeper.study_name={name}: the stored study's trials ran with other settings ({why}); "
                "name another study (hydra.sweeper.study_name=...) with another hydra.sweep.dir, or rerun with "
                "the study's settings"
            )
    if recorded != wanted:
        study.set_user_attr(SETTINGS, wanted)


def check_sweep_folder(sweep_dir: Path, name: str, study: optuna.Study, stored: bool) -> None:
    """Trial folders are numbered by trial: another study's folders in this sweep folder would be taken for
    this study's trials (its trial 0 launched into their folder 0). Refused before the first trial; the study
    is recorded in the sweep folder for the next invocation to tell."""
    from chipadapt.io.atomic import write_text_atomic

    record = sweep_dir / STUDY_RECORD
    try:
        owner = json.loads(record.read_text()).get("study_name")
    except (OSError, ValueError, AttributeError):
        owner = None
    held = held_trials(sweep_dir)
    if owner is None and held and stored:  # folders of a study stored before the record, or of a grid sweep
        own = {Path(str(t.user_attrs.get(FOLDER))) for t in study.trials}
        if not any(sweep_dir / str(number) in own for number in held):
            owner = "another search"
    if owner is not None and owner != name:
        whose = owner if owner == "another search" else repr(owner)
        listed = ", ".join(map(str, held[:5])) + (" ..." if len(held) > 5 else "")
        refuse(
            f"hydra.sweep.dir={sweep_dir} holds the trial folders of {whose} ({listed}): study {name!r} would run"
            " its trials in them; give it another hydra.sweep.dir"
        )
    if owner is None:
        write_text_atomic(record, json.dumps({"study_name": name}) + "\n")


def left_to_its_process(trial: optuna.trial.FrozenTrial, sweep_dir: Path) -> str | None:
    """Why a RUNNING trial is not this invocation's to run again, or None when it was interrupted here.
    Several processes may share one stored study (Optuna's way to search in parallel): a trial another
    process is running must not run twice. Resumed when it ran in this sweep folder and nobody holds its
    folder's run lock (a killed job's lock died with it, io/lock_probe.py), or when its folder has no lock to
    tell (killed before its job took it, or run in a folder hydra.sweep.subdir names otherwise), the search
    process that asked for it holds its claim no more (search_claim) and that process ran its jobs itself
    (JOBS_HERE: they died with it). A job another launcher queued (SLURM) outlives the search: left alone."""
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
    if searcher is False and folder and folder_lock_held(folder) is False:  # its job was killed: resumes
        return None
    if searcher is False and trial.user_attrs.get(JOBS_HERE) is True:  # its jobs died with its search
        return None
    if searcher is False:
        return (
            "its job never took its folder's lock and was submitted by a launcher that runs jobs outside the search"
            " process (hydra/launcher=slurm), which does not cancel them when the search dies: it may still be"
            " queued (if it is not, mark the trial failed in the study to run it again)"
        )
    if not folder:
        return "no job folder recorded (asked by a process that has not launched it yet, or by an older chipadapt)"
    if folder_lock_held(folder) is None:
        return f"{folder} has no run lock to tell whether a process still runs it (a job not started yet)"
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


def held_trials(sweep_dir: Path) -> list[int]:
    """The trial folders (numbered, with a manifest) the sweep folder already holds."""
    if not sweep_dir.is_dir():
        return []
    return sorted(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit() and (p / "manifest.json").is_file())


def reseed(sampler: Any, seed: int | None, offset: int) -> None:
    """A seeded sampler continued on a stored study would draw its random start-up trials again (the same
    parameters, run twice): its generators restart from seed + the trials stored, reproducible still."""
    if seed is None or offset == 0:
        return
    import numpy as np

    if hasattr(sampler, "_rng"):
        sampler._rng = np.random.RandomState(seed + offset)
    inner = getattr(sampler, "_random_sampler", None)
    if inner is not None and hasattr(inner, "_rng"):
        inner._rng = np.random.RandomState(seed + offset)


class StudySweeper(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        self._process_searchspace_config()
        params_conf = [*self._parse_sweeper_params_config(), *arguments]
        space, fixed = create_params_from_overrides(params_conf)
        for name in fixed:
            space.pop(name, None)
        if callable(self.sampler) and not isinstance(self.sampler, optuna.samplers.BaseSampler):
            refuse("hydra/sweeper/sampler=grid is not supported by chipadapt's search; use tpe or random")
        directions = self._get_directions()
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).expanduser().absolute()
        if str(self.storage or "").startswith("sqlite:///"):  # a study kept in the sweep folder: made before its jobs
            sweep_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=directions,
            load_if_exists=True,
        )
        check_study(study, search_settings(directions, space, fixed), str(self.study_name))
        stored = study.trials
        if self.storage is None:
            # Refused rather than merged: an in-memory study knows only this invocation's trials, and a
            # folder trial it does not know was drawn by another invocation whose settings are not recorded.
            held = held_trials(sweep_dir)
            if len(held) > self.n_trials:
                refuse(
                    f"{sweep_dir} holds {len(held)} finished trials and hydra.sweeper.n_trials={self.n_trials}: the "
                    "in-memory study would report the best of its own trials only; rerun with hydra.sweeper.n_trials="
                    f"{len(held)} or more (the seeded sampler redraws the same trials, read back from their folders), "
                    "or another hydra.sweep.dir"
                )
        check_sweep_folder(sweep_dir, str(self.study_name), study, self.storage is not None)
        reseed(self.sampler, OmegaConf.select(self.config, "hydra.sweeper.sampler.seed"), len(stored))
        with search_claim(sweep_dir, self.storage is not None) as claim:
            self._search(study, space, fixed, sweep_dir, directions, claim)
        report(study, sweep_dir, directions, self.config)

    def _search(
        self, study: optuna.Study, space: dict, fixed: dict, sweep_dir: Path, directions: list[str], claim: str | None
    ) -> None:
        """Run the interrupted trials again, then ask for and run trials until the study has n_trials."""
        stored = study.trials
        for trial in [t for t in stored if t.state == TrialState.RUNNING]:
            why = left_to_its_process(trial, sweep_dir)
            if why:
                log.warning("trial #%d is RUNNING and left alone: %s", trial.number, why)
                continue
            log.warning("trial #%d was interrupted: it runs again in its folder", trial.number)
            if claim:
                record(study, trial.number, CLAIM, claim)
            record(study, trial.number, JOBS_HERE, runs_jobs_here(self.launcher))
            self._run(study, [(trial.number, dict(trial.params), fixed)], sweep_dir, directions)
        # n_trials is the study's total, as for an in-memory study: a rerun of the same command (or a second
        # process on the same study) runs what is missing. A trial that failed is not counted: it has no value.
        while (to_go := self.n_trials - sum(t.state != TrialState.FAIL for t in study.trials)) > 0:
            asked = []
            for _ in range(min(to_go, self.n_jobs)):
                trial = study.ask()
                for name, distribution in space.items():
                    trial._suggest(name, distribution)
                for name, value in fixed.items():
                    trial.set_user_attr(name, value)
                if claim:
                    trial.set_user_attr(CLAIM, claim)
                trial.set_user_attr(JOBS_HERE, runs_jobs_here(self.launcher))
                if self.custom_search_space_extender:
                    self.custom_search_space_extender(self.config, trial)
                asked.append((trial.number, dict(trial.params), fixed))
            self._run(study, asked, sweep_dir, directions)

    def _run(self, study: optuna.Study, trials: list, sweep_dir: Path, directions: list[str]) -> None:
        """Launch trials (number, params, fixed), each in the job folder of its number, and tell their values.
        Trials of consecutive numbers (a batch of n_jobs) go to the launcher together, to run in parallel."""
        numbers = [number for number, _, _ in trials]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            for trial in trials:
                self._run(study, [trial], sweep_dir, directions)
            return
        folders = [recorded_folder(study, number) or sweep_dir / str(number) for number in numbers]
        for number, folder in zip(numbers, folders):
            record_folder(study, number, folder)
        overrides = [tuple(f"{k}={v}" for k, v in {**params, **fixed}.items()) for _, params, fixed in trials]
        since = launch_time()
        try:
            returns = self.launcher.launch(overrides, initial_job_idx=numbers[0])
        except BaseException as err:
            # A job refused its input (exit 2), or a launcher reports a failed job (submitit): each trial is
            # told what its own folder says (optuna_trial_outcome.py). An interrupt leaves them RUNNING.
            metric = str(OmegaConf.select(self.config, "optimized_metric", default=None) or "")
            batch = [Launched(*launched) for launched in zip(numbers, folders, overrides)]
            for number, ended in zip(numbers, batch_outcomes(err, batch, sweep_dir, since, metric, directions) or []):
                if ended.running:
                    log.warning("trial #%d is left RUNNING: %s", number, ended.why)
                elif ended.values is not None:
                    tell(study, number, ended.values)
                else:
                    log.warning("trial #%d failed: %s", number, ended.why)
                    fail(study, number)
            raise
        failed = None
        for number, returned in zip(numbers, returns):
            job_hydra = getattr(returned, "hydra_cfg", None)
            ran_in = OmegaConf.select(job_hydra, "hydra.runtime.output_dir") if job_hydra is not None else None
            if ran_in:  # hydra.sweep.subdir may name it otherwise than its number (working_dir: the cwd, not it)
                record_folder(study, number, Path(str(ran_in)).absolute())
            try:  # a job that raised raises here (Hydra's JobReturn); one interrupted never returns: left RUNNING
                value = returned.return_value
                values = [float(value)] if len(directions) == 1 else [float(v) for v in value]
            except Exception as err:  # noqa: BLE001 (raised once the batch-mates' values are told)
                fail(study, number)
                failed = failed or err
                continue
            tell(study, number, values)
        if failed is not None:
            raise failed


def runs_jobs_here(launcher: Any) -> bool:
    """Whether the launcher runs the jobs inside this process (Hydra's basic launcher), so they end with it."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher)
