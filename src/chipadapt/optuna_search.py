"""Hydra's Optuna sweeper with a study that stays one search (conf/hydra/sweeper/chipadapt_optuna.yaml;
the plugin class is hydra_plugins/chipadapt_search, where Hydra requires sweepers to be).

The plugin's sweeper joins any stored study of the same name whatever its settings, numbers its jobs from 0
on every invocation (so a rerun's folder 0 holds an earlier trial of other parameters), leaves the trials a
killed invocation was running RUNNING for ever, and reports Optuna's first best trial only. Here:
- a stored study whose trials ran with other fixed overrides, another search space or direction is refused
  before the first trial (each study records its settings in its user attributes), and so is a sweep folder
  holding another study's trial folders;
- job folders are numbered by trial number, so a rerun of the same command continues the study (n_trials is
  the study's total); a trial left RUNNING by a killed search process that ran its jobs itself (the basic
  launcher: they died with it) is run again with its own parameters in its own folder (its checkpoint
  resumes), by one process only (a lock per trial); one whose job another launcher submitted
  (hydra/launcher=slurm: queued or requeued still, maybe) or a live process runs is left to it;
- a trial whose job refused its input is marked failed, not left RUNNING, and each batch-mate is told what
  its own folder records of the launch (optuna_trial_outcome.py): where it records no end, RUNNING, to resume;
  one left RUNNING whose job refused later (queued by SLURM when a batch-mate's error ended the launch) is
  failed by the next run of the search;
- a seeded sampler is reseeded by the number of trials already stored, so it does not draw its start-up
  trials again;
- optimization_results.yaml names the tied best trials, the runner-up and their paired difference
  (optuna_results.py)."""

import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState

from chipadapt.optuna_results import FOLDER, report
from chipadapt.optuna_resume import CLAIM, JOBS_HERE, resumable, runs_jobs_here, search_claim
from chipadapt.optuna_trial_outcome import (
    LAUNCH,
    Launched,
    batch_outcomes,
    launch_time,
    launching,
    new_launch,
    refused_since,
)
from chipadapt.optuna_trial_store import fail, record, record_folder, tell
from chipadapt.run_folder_guard import refuse
from chipadapt.sweep_job_folders import NUMBERED

log = logging.getLogger(__name__)
SETTINGS = "chipadapt_settings"  # the study's user attribute: what its trials ran with
STUDY_RECORD = "optuna_study.json"  # in the sweep folder: the study whose trials its numbered folders hold
# Trials that ran with the study's settings: a trial failed at its start (bad input, exit 2) ran with none.
RAN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


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
        for number in [t.number for t in study.trials if t.state == TrialState.RUNNING]:
            if fail_if_refused(study, number, fixed):
                continue
            with ExitStack() as held:
                trial = resumable(study, number, sweep_dir, held)
                if trial is None:
                    continue
                log.warning("trial #%d was interrupted: it runs again in its folder", number)
                if claim:
                    record(study, number, CLAIM, claim)
                record(study, number, JOBS_HERE, runs_jobs_here(self.launcher))
                self._run(study, [(number, dict(trial.params), fixed)], sweep_dir, directions)
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
        overrides = [trial_overrides(params, fixed) for _, params, fixed in trials]
        here = runs_jobs_here(self.launcher)
        folders = [job_folder(self.config, sweep_dir, n, o, here) for n, o in zip(numbers, overrides)]
        for number, folder in zip(numbers, folders):
            if folder is not None:
                record_folder(study, number, folder)
        # The launch's id, which its jobs' records carry, tells them from an earlier launch's in the same folder
        # (a trial run again) by no clock; kept on each trial for the next run of the search (fail_if_refused).
        launch, since = new_launch(), launch_time()
        for number in numbers:
            record(study, number, LAUNCH, launch)
        try:
            with launching(launch):
                returns = self.launcher.launch(overrides, initial_job_idx=numbers[0])
        except BaseException as err:
            # Each trial is told what its own folder says of this launch (optuna_trial_outcome.py).
            metric = str(OmegaConf.select(self.config, "optimized_metric", default=None) or "")
            batch = [Launched(*launched) for launched in zip(numbers, folders, overrides)]
            ended_as = batch_outcomes(err, batch, here, since, metric, directions, launch)
            for number, ended in zip(numbers, ended_as):
                if ended.running:
                    log.warning("trial #%d is left RUNNING: %s", number, ended.why)
                elif ended.values is not None:
                    tell(study, number, ended.values)
                else:
                    log.warning("trial #%d failed: %s", number, ended.why)
                    fail(study, number)
            if here or not isinstance(err, Exception) or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            # A launcher's own report of a job that failed elsewhere (submitit's UncompletedJobError, with
            # the job's stderr): one line, not a traceback; the job's log in its folder says the rest.
            first = (str(err).strip().splitlines() or [""])[0]
            numbered = f"#{numbers[0]}" + (f"-#{numbers[-1]}" if len(numbers) > 1 else "")
            print(
                f"chipadapt: error: a job of trials {numbered} failed ({type(err).__name__}: {first}); see its "
                "log in its job folder; the trials whose folders record no end stay RUNNING",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1) from err
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


def trial_overrides(params: dict, fixed: dict) -> tuple[str, ...]:
    """The overrides a trial's job is launched with: its parameters, then the search's fixed overrides."""
    return tuple(f"{k}={v}" for k, v in {**params, **fixed}.items())


def fail_if_refused(study: optuna.Study, number: int, fixed: dict) -> bool:
    """Fail the RUNNING trial `number` where its job refused its input once the search that launched it had
    stopped waiting for it (a batch-mate SLURM still queued when another job's error ended the launch): its
    folder's refusal record says so (optuna_trial_outcome.refused_since). True where it was failed."""
    trial = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    folder = trial.user_attrs.get(FOLDER)
    if trial.state != TrialState.RUNNING or not folder or trial.datetime_start is None:
        return False
    asked = trial.datetime_start.astimezone()  # Optuna's naive local time of the search host that asked
    # Its last launch's id, where the study records one: its records are told by it, not by `asked`.
    if not refused_since(Path(folder), trial_overrides(trial.params, fixed), asked, trial.user_attrs.get(LAUNCH)):
        return False
    log.warning("trial #%d failed: its job refused its input (exit 2; its log in %s says why)", number, folder)
    fail(study, number)
    return True


def job_folder(config: Any, sweep_dir: Path, number: int, overrides: tuple[str, ...], jobs_here: bool) -> Path | None:
    """The folder hydra.sweep.subdir gives job `number`, resolved as Hydra's launchers resolve it (the
    job's config, hydra.job.num and, under the basic launcher (`jobs_here`), .id set to its number); None
    where it cannot be told before the job (a subdir read from the clock, a job id that SLURM assigns)."""
    subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    if subdir in (None, NUMBERED):  # the default: no composition needed
        return sweep_dir / str(number)
    if "now:" in str(subdir) or ("job.id" in str(subdir) and not jobs_here):
        return None
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    hydra, hydra_config = GlobalHydra.instance(), HydraConfig.instance()
    previous = hydra_config.cfg
    try:
        job = hydra.config_loader().load_sweep_config(config, list(overrides)) if hydra.is_initialized() else config
        job = OmegaConf.create(OmegaConf.to_container(job, resolve=False))  # a copy: the sweep's config unchanged
        for key in ("hydra.job.id", "hydra.job.num"):
            OmegaConf.update(job, key, number, force_add=True)
        hydra_config.cfg = job  # for ${hydra:...} in the subdir
        return Path(os.path.abspath(sweep_dir / str(OmegaConf.select(job, "hydra.sweep.subdir"))))
    except Exception:  # noqa: BLE001 (the job meets it, and reports it in its own words)
        log.debug("trial #%d: its job folder is not resolved before the job", number, exc_info=True)
        return None
    finally:
        hydra_config.cfg = previous
