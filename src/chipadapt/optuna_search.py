"""Hydra's Optuna sweeper with a study that stays one search (conf/hydra/sweeper/chipadapt_optuna.yaml;
the plugin class is hydra_plugins/chipadapt_search, where Hydra requires sweepers to be).

The plugin's sweeper joins any stored study of the same name whatever its settings, numbers its jobs from 0
on every invocation (so a rerun's folder 0 holds an earlier trial of other parameters), leaves the trials a
killed invocation was running RUNNING for ever, and reports Optuna's first best trial only. Here:
- a stored study whose trials ran with other fixed overrides, another search space or direction is refused
  before the first trial (each study records its settings in its user attributes);
- job folders are numbered by trial number, so a rerun of the same command continues the study, and a
  trial left RUNNING is run again with its own parameters in its own folder (its checkpoint resumes);
- a seeded sampler is reseeded by the number of trials already stored, so it does not draw its start-up
  trials again;
- optimization_results.yaml names the tied best trials, the runner-up and their paired difference."""

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState

log = logging.getLogger(__name__)
SETTINGS = "chipadapt_settings"  # the study's user attribute: what its trials ran with
FOLDER = "chipadapt_folder"  # a trial's user attribute: the job folder it ran in
USER_ERROR_STATUS = 2


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


def refuse(message: str) -> None:
    print(f"chipadapt: error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


def check_study(study: optuna.Study, wanted: dict, name: str) -> None:
    """Refuse a stored study whose trials ran with other settings, naming the first one that differs."""
    recorded = study.user_attrs.get(SETTINGS)
    stored = [recorded] if recorded else [trial_settings(t, wanted["direction"]) for t in study.trials if t.params]
    for settings in stored:
        why = first_difference(settings, wanted)
        if why:
            refuse(
                f"hydra.sweeper.study_name={name}: the stored study's trials ran with other settings ({why}); "
                "name another study (hydra.sweeper.study_name=...) or rerun with the study's settings"
            )
    if not recorded:
        study.set_user_attr(SETTINGS, wanted)


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
        reseed(self.sampler, OmegaConf.select(self.config, "hydra.sweeper.sampler.seed"), len(stored))
        running = [t for t in stored if t.state == TrialState.RUNNING]
        for trial in running:
            folder = trial.user_attrs.get(FOLDER)
            if folder and Path(folder) != sweep_dir / str(trial.number):
                log.warning(
                    "trial #%d was interrupted in %s: it runs again in %s (hydra.sweep.dir=%s resumes its checkpoint)",
                    trial.number,
                    folder,
                    sweep_dir / str(trial.number),
                    Path(folder).parent,
                )
            self._run(study, [(trial.number, dict(trial.params), fixed)], sweep_dir, directions)
        to_go = self.n_trials - len(running)
        while to_go > 0:
            batch = min(to_go, self.n_jobs)
            asked = []
            for _ in range(batch):
                trial = study.ask()
                for name, distribution in space.items():
                    trial._suggest(name, distribution)
                for name, value in fixed.items():
                    trial.set_user_attr(name, value)
                if self.custom_search_space_extender:
                    self.custom_search_space_extender(self.config, trial)
                asked.append((trial.number, dict(trial.params), fixed))
            self._run(study, asked, sweep_dir, directions)
            to_go -= batch
        report(study, sweep_dir, directions, self.config)

    def _run(self, study: optuna.Study, trials: list, sweep_dir: Path, directions: list[str]) -> None:
        """Launch trials (number, params, fixed), each in the job folder of its number, and tell their values.
        Trials of consecutive numbers (a batch of n_jobs) go to the launcher together, to run in parallel."""
        numbers = [number for number, _, _ in trials]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            for trial in trials:
                self._run(study, [trial], sweep_dir, directions)
            return
        for number in numbers:
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            study._storage.set_trial_user_attr(trial_id, FOLDER, str(sweep_dir / str(number)))
        overrides = [tuple(f"{k}={v}" for k, v in {**params, **fixed}.items()) for _, params, fixed in trials]
        returns = self.launcher.launch(overrides, initial_job_idx=numbers[0])
        for number, returned in zip(numbers, returns):
            try:  # a job that raised raises here (Hydra's JobReturn); one interrupted never returns: left RUNNING
                value = returned.return_value
                values = [float(value)] if len(directions) == 1 else [float(v) for v in value]
            except Exception:
                study.tell(number, state=TrialState.FAIL)
                raise
            study.tell(number, values=values)


def matching(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's completed trials, best first (their settings are this search's: check_study)."""
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(done, key=lambda t: (sign * t.value, t.number))


def report(study: optuna.Study, sweep_dir: Path, directions: list[str], config) -> None:
    from chipadapt.io.atomic import write_text_atomic

    if len(directions) > 1:
        front = [{"number": t.number, "params": t.params, "values": t.values} for t in study.best_trials]
        results: dict = {"name": "optuna", "solutions": front}
    else:
        ranked = matching(study)
        if not ranked:
            log.warning("no trial of the study completed: no optimization_results.yaml")
            return
        best = ranked[0]
        tied = [t for t in ranked if t.value == best.value]
        results = {
            "name": "optuna",
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
            "completed_trials": len(ranked),
        }
        if len(tied) > 1:
            results["tied_best"] = [{"number": t.number, "params": t.params} for t in tied]
            log.warning(
                "best value %s is tied between %d trials (%s): Optuna names the first",
                best.value,
                len(tied),
                ", ".join(f"#{t.number}" for t in tied),
            )
        if len(ranked) > 1:
            second = ranked[1]
            results["runner_up"] = {"number": second.number, "params": second.params, "value": second.value}
            results["versus_runner_up"] = versus(best, second, str(config.get("optimized_metric") or ""))
        other = merge_report_choice(config, sweep_dir)
        if other is not None and other != _folder_name(best):
            results["merge_sweep_report_choice"] = other
            log.warning(
                "Optuna's best trial is #%d; the merge sweep report (sweep_report.json) chooses job %s, %s",
                best.number,
                other,
                "tied with it on this metric (the report weighs the domain metric too)"
                if other in {_folder_name(t) for t in tied}
                else "weighing the domain metric too",
            )
        log.info("Best trial #%d: value %s, params %s", best.number, best.value, best.params)
    write_text_atomic(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results)))


def _folder_name(trial: optuna.trial.FrozenTrial) -> str:
    return Path(trial.user_attrs.get(FOLDER) or str(trial.number)).name


def versus(best: optuna.trial.FrozenTrial, second: optuna.trial.FrozenTrial, metric: str) -> dict:
    """The winner's paired difference from the runner-up on the objective's items, or why there is none."""
    folders = [Path(t.user_attrs.get(FOLDER) or "") for t in (second, best)]
    if not all(f.is_dir() for f in folders):
        return {"paired": False, "reason": "a trial's folder is not on this machine"}
    from chipadapt.eval.paired_compare import paired_rows

    try:
        rows = paired_rows([(f"#{second.number}", folders[0]), (f"#{best.number}", folders[1])], [metric])
    except Exception as err:  # noqa: BLE001 (the pairing is an addition to the result: said, not fatal)
        return {"paired": False, "reason": f"{type(err).__name__}: {err}"}
    row = next((r for r in rows if r.get("metric") in (metric, metric.split(".")[0])), None)
    if row is None:
        return {"paired": False, "reason": f"the trials' folders hold no per-item files for {metric}"}
    if row.get("test") == row.get("verdict") and row.get("reason"):
        return {"paired": False, "reason": str(row["reason"])}
    keys = ("n", "difference", "ci95_lo", "ci95_hi", "p", "test", "verdict")
    out = {"paired": True, "metric": row.get("metric"), "of": f"#{best.number} - #{second.number}"}
    out.update({k: row.get(k) for k in keys})
    if "exact" in str(row.get("test")) and isinstance(row.get("n"), int) and row["n"] < 6:
        out["note"] = f"n={row['n']} items: an exact test cannot go below p={2 / 2 ** row['n']:.3g}"
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def merge_report_choice(config, sweep_dir: Path) -> str | None:
    """The job the merge sweep report (merge/sweep_report.py) chooses from the same folders, when it runs."""
    spec = OmegaConf.select(config, "hydra.callbacks.lambda_sweep")
    if spec is None:
        return None
    from chipadapt.merge.sweep_report import choose, collect

    rows = collect(sweep_dir, str(spec.domain_metric), str(spec.instruct_metric))
    if not rows:
        return None
    from chipadapt.optimized_metric import better_direction

    instruct_higher = better_direction(str(spec.instruct_metric)) != "minimize"
    return str(choose(rows, bool(spec.domain_higher_is_better), instruct_higher)["job"])
