"""A trial whose job refused its input (exit 2) under a launcher that runs its jobs outside the search
process (submitit, local or SLURM) fails: the job leaves a refusal record of its launch in its folder
(manifest.record_refusal), which tells it from a job queued still. Before: submitit's UncompletedJobError
does not carry the job's exit status and a refused job leaves no manifest of its own, so the trial stayed
RUNNING until a person marked it failed."""

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from chipadapt.manifest import REFUSAL, record_refusal
from chipadapt.optuna_search import StudySweeper, trial_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)


class SubmititLike:
    """Not Hydra's basic launcher: its jobs run elsewhere (submitit's); `jobs` plays them as its `launch`."""

    def __init__(self, jobs):
        self.launch = jobs


def search_of_two(tmp_path: Path, jobs) -> tuple[StudySweeper, str]:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sampler = optuna.samplers.RandomSampler(seed=1)
    search = StudySweeper(sampler, "minimize", storage, "dapt", 2, 2, None, None, OmegaConf.create({}))
    search.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    search.config.optimized_metric = "val/domain/bpb"
    search.launcher = SubmititLike(jobs)
    search.arguments = ["optim.lr=interval(0,1)", "trainer.max_steps=2"]
    return search, storage


def as_job(monkeypatch, folder: Path, overrides, mode=RunMode.MULTIRUN) -> None:
    """Make the current Hydra job the one in `folder` launched with `overrides`, as the job process sees it."""
    hydra = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(folder)), mode=mode)
    hydra.overrides = SimpleNamespace(task=list(overrides))
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hydra))


def refuses(monkeypatch, folder: Path, overrides) -> None:
    """A job that refused its input before it recorded itself: Hydra made its folder; cli.run_job records
    the refusal as it exits with status 2."""
    folder.mkdir(parents=True, exist_ok=True)
    as_job(monkeypatch, folder, overrides)
    record_refusal()


def uncompleted(number: int):
    from submitit.core.utils import UncompletedJobError

    return UncompletedJobError(f"Job 7_{number} has not produced any output (state: FAILED)\nError stream:\n...")


def test_a_refused_submitit_job_fails_its_trial_and_a_queued_mate_stays_running(tmp_path, monkeypatch):
    def jobs(overrides, initial_job_idx):  # job 0 refused; job 1 waits in the queue (submitit waits in order)
        refuses(monkeypatch, tmp_path / "sweep" / str(initial_job_idx), overrides[0])
        raise uncompleted(0)

    search, storage = search_of_two(tmp_path, jobs)
    with pytest.raises(SystemExit) as stop:
        search.sweep(search.arguments)
    assert stop.value.code == 1
    assert [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials] == ["FAIL", "RUNNING"]


@pytest.mark.parametrize("which", ["earlier launch", "other overrides"])
def test_a_refusal_of_another_launch_leaves_the_trial_running(tmp_path, monkeypatch, which):
    def jobs(overrides, initial_job_idx):
        recorded = [*overrides[0], "trainer.max_steps=50"] if which == "other overrides" else overrides[0]
        refuses(monkeypatch, tmp_path / "sweep" / str(initial_job_idx), recorded)
        if which == "earlier launch":  # a refusal recorded by an earlier command in the same folder
            record = tmp_path / "sweep" / str(initial_job_idx) / REFUSAL
            record.write_text(json.dumps({**json.loads(record.read_text()), "refused": "2020-01-01T00:00:00+00:00"}))
        raise uncompleted(0)

    search, storage = search_of_two(tmp_path, jobs)
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    assert [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials] == ["RUNNING"] * 2


def test_a_refusal_is_recorded_only_by_a_sweep_job_in_its_own_existing_folder(tmp_path, monkeypatch):
    as_job(monkeypatch, tmp_path / "run", ["optim.lr=0.1"], mode=RunMode.RUN)
    (tmp_path / "run").mkdir()
    record_refusal()  # a single run: no search reads it
    assert not (tmp_path / "run" / REFUSAL).exists()
    as_job(monkeypatch, tmp_path / "never made", ["optim.lr=0.1"])
    record_refusal()  # refused before Hydra made its folder: nothing made for it
    assert not (tmp_path / "never made").exists()
    refuses(monkeypatch, tmp_path / "sweep" / "0", ["optim.lr=0.1"])
    record = json.loads((tmp_path / "sweep" / "0" / REFUSAL).read_text())
    assert record["overrides"] == ["optim.lr=0.1"] and record["status"] == "refused"
    assert dt.datetime.fromisoformat(record["refused"]).utcoffset() == dt.timedelta(0)


def test_a_queued_mate_that_refused_after_the_search_ended_is_failed_by_its_next_run(tmp_path, monkeypatch):
    def jobs(overrides, initial_job_idx):  # job 0 refused; job 1 is queued still when the launch ends
        refuses(monkeypatch, tmp_path / "sweep" / str(initial_job_idx), overrides[0])
        raise uncompleted(0)

    search, storage = search_of_two(tmp_path, jobs)
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    refuses(monkeypatch, tmp_path / "sweep" / "1", trial_overrides(trials[1].params, {"trainer.max_steps": "2"}))
    monkeypatch.undo()  # the search process again: no Hydra job of its own

    def complete(overrides, initial_job_idx):
        return [SimpleNamespace(return_value=0.5) for _ in overrides]

    again, _ = search_of_two(tmp_path, complete)  # the same command: n_trials=2 of the study
    again.sweep(again.arguments)
    states = [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials]
    assert states == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
