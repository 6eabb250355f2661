"""A trial whose job refused its input (exit 2) under a launcher that runs its jobs outside the search
process (submitit, local or SLURM) fails: the job leaves a refusal record of its launch in its folder
(manifest.record_refusal), which tells it from a job queued still. Before: submitit's UncompletedJobError
does not carry the job's exit status and a refused job leaves no manifest of its own, so the trial stayed
RUNNING until a person marked it failed."""

import datetime as dt
import json
import signal
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from conftest import CONF, TINY_FAST
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from chipadapt import cli, interrupts, run_folder_guard
from chipadapt.errors import ChipadaptError
from chipadapt.manifest import REFUSAL, record_refusal, utc_now
from chipadapt.optuna_search import StudySweeper, trial_overrides
from chipadapt.optuna_trial_outcome import Launched, launch_time, outcome

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
            earlier = {"refused": "2020-01-01T00:00:00+00:00", "launch": "an earlier launch's id"}
            record.write_text(json.dumps({**json.loads(record.read_text()), **earlier}))
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


def started_running(folder: Path, overrides, started: str | None = None) -> None:
    """The manifest a job writes as it starts (then killed, or preempted by SLURM: it still says running)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"kind": "train", "status": "running", "overrides": list(overrides), "config": {}}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "started": started or utc_now()}))


def test_a_job_requeued_after_its_manifest_whose_attempt_refused_fails_its_trial(tmp_path, monkeypatch):
    """Its first attempt recorded itself (running) and was preempted; the requeued one refused, which put the
    folder's records back: its manifest still says running. Before: the trial stayed RUNNING."""

    def jobs(overrides, initial_job_idx):
        folder = tmp_path / "sweep" / str(initial_job_idx)
        started_running(folder, overrides[0])
        refuses(monkeypatch, folder, overrides[0])
        raise uncompleted(0)

    search, storage = search_of_two(tmp_path, jobs)
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    assert [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials] == ["FAIL", "RUNNING"]


def at(since: dt.datetime, seconds: float) -> str:
    return (since + dt.timedelta(seconds=seconds)).astimezone(dt.UTC).isoformat(timespec="seconds")


@pytest.mark.parametrize("started_s, failed", [(10, True), (30, False)], ids=["before the refusal", "after it"])
def test_a_running_manifest_is_failed_only_by_a_refusal_after_it(tmp_path, started_s, failed):
    """An attempt that started after the refusal (requeued again, running now) is the trial's: RUNNING."""
    since, overrides = launch_time() - dt.timedelta(minutes=1), ("optim.lr=0.1",)
    started_running(tmp_path, overrides, at(since, started_s))
    record = {"status": "refused", "overrides": list(overrides), "refused": at(since, 20)}
    (tmp_path / REFUSAL).write_text(json.dumps(record))
    told = outcome(Launched(0, tmp_path, overrides), since, "val/domain/bpb", ["minimize"])
    assert told.running is not failed and told.values is None


def test_records_of_a_node_whose_clock_runs_a_little_behind_are_this_launchs(tmp_path):
    """A SLURM node's clock seconds behind the search host's: its aware manifest and refusal record still
    count for the launch. Before: an aware time was compared exactly and the trial was left RUNNING."""
    from chipadapt.optuna_trial_outcome import refused_since

    since, overrides = launch_time(), ("optim.lr=0.1",)
    (tmp_path / "ran").mkdir()
    manifest = {"kind": "train", "status": "failed", "error": "OutOfMemoryError: CUDA", "config": {}}
    manifest |= {"overrides": list(overrides), "started": at(since, -5)}
    (tmp_path / "ran" / "manifest.json").write_text(json.dumps(manifest))
    told = outcome(Launched(0, tmp_path / "ran", overrides), since, "val/domain/bpb", ["minimize"])
    assert told is not None and not told.running and "OutOfMemoryError" in told.why
    (tmp_path / "refused").mkdir()
    record = {"status": "refused", "overrides": list(overrides), "refused": at(since, -5)}
    (tmp_path / "refused" / REFUSAL).write_text(json.dumps(record))
    told = outcome(Launched(0, tmp_path / "refused", overrides), since, "val/domain/bpb", ["minimize"])
    assert told is not None and not told.running and "refused" in told.why
    assert refused_since(tmp_path / "refused", overrides, since)


def refuse_input(cfg):
    raise ChipadaptError("data.train_file: /nonexistent does not exist")


@pytest.fixture
def job_signals():
    """run_job takes over the stop signals: this process's handlers come back after the test."""
    signals = interrupts.STOP_SIGNALS + interrupts.REQUEUE_SIGNALS
    saved = {sig: signal.getsignal(sig) for sig in signals}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def sweep_job(tmp_path):
    """The folder of job 0 of a sweep, as HydraConfig describes it to the job that runs there (the config
    cli.run_job validates reads it); the job's own config, without its `hydra` node, is returned."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    folder = tmp_path / "sweep" / "0"
    folder.mkdir(parents=True)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = [*TINY_FAST, f"paths.output_dir={folder}"]
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.runtime.output_dir = str(folder)
        cfg.hydra.overrides.task = ["optim.lr=0.1"]
    HydraConfig.instance().set_config(cfg)
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    yield folder, job
    HydraConfig.instance().cfg = None


def test_a_sweep_job_that_refused_its_input_leaves_its_refusal_record(sweep_job, monkeypatch, capsys, job_signals):
    """cli.run_job, as Hydra runs a job of a sweep whose target refuses its input: exit 2, and the record."""
    monkeypatch.setattr(run_folder_guard, "_SWEEP", {})  # no multirun.yaml of another test's sweep to put back
    folder, cfg = sweep_job
    with pytest.raises(SystemExit) as stop:
        cli.run_job("test_optuna_refused_job:refuse_input", cfg)
    assert stop.value.code == 2
    assert capsys.readouterr().err == "chipadapt: error: data.train_file: /nonexistent does not exist\n"
    record = json.loads((folder / REFUSAL).read_text())
    assert record["status"] == "refused" and record["overrides"] == ["optim.lr=0.1"]
