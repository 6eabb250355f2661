"""chipadapt's Optuna sweeper runs each trial once, whatever else runs on the study: a trial another process
runs or finished meanwhile is left to it, a trial whose job refused its input fails alone (its batch-mates
keep their values) and does not block the fixed rerun, and a trial is paired with the folder its job ran in.
Before, a second process on the study ran the first's trial again, and a trial whose job refused its input
stayed RUNNING and blocked the fixed rerun."""

from types import SimpleNamespace

import optuna
import pytest
from helpers.optuna_sweeper import basic_launcher_batch, states, sweeper
from omegaconf import OmegaConf

from chipadapt.io.lock import run_folder_lock
from chipadapt.optuna_results import FOLDER


@pytest.mark.parametrize("its_sweep", ["sweep", "other_sweep"])
def test_a_trial_another_process_is_running_is_left_to_it(tmp_path, its_sweep):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    second = sweeper(tmp_path, storage, 2)

    def meanwhile(index):  # the first process trains trial 0, holding its folder; a second one starts
        second.sweep(second.arguments)

    first = sweeper(tmp_path, storage, 1, sweep=its_sweep)
    first.launcher.during = meanwhile
    first.sweep(first.arguments)
    assert [number for number, _ in second.launcher.launched] == [1]  # not trial 0 again
    assert states(storage) == ["COMPLETE", "COMPLETE"]  # and the first's tell found its trial open


def test_a_trial_finished_meanwhile_by_another_process_is_no_crash(tmp_path, caplog):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 1)
    first.launcher.during = lambda index: optuna.load_study(study_name="dapt", storage=storage).tell(index, 9.0)
    first.sweep(first.arguments)
    assert "finished by another process meanwhile" in caplog.text
    assert optuna.load_study(study_name="dapt", storage=storage).trials[0].value == 9.0


def test_a_trial_whose_job_refused_its_input_fails_and_the_fixed_input_is_accepted(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    bad = sweeper(tmp_path, storage, 1, fixed="optimized_metric=val/nope/bpb")

    def refused(index):
        raise SystemExit(2)  # as cli.py exits on a ChipadaptError

    bad.launcher.during = refused
    with pytest.raises(SystemExit):
        bad.sweep(bad.arguments)
    assert states(storage) == ["FAIL"]
    fixed = sweeper(tmp_path, storage, 1, fixed="optimized_metric=val/domain/bpb")
    fixed.sweep(fixed.arguments)  # no trial ran with the bad input: not "ran with other settings"
    assert [number for number, _ in fixed.launcher.launched] == [1]  # the failed trial is not repeated
    assert states(storage) == ["FAIL", "COMPLETE"]


def test_a_failed_batch_mate_leaves_no_completed_trial_running(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    launch = search.launcher.launch

    def one_fails(overrides, initial_job_idx):
        returns = launch(overrides, initial_job_idx)

        class Raised:
            @property
            def return_value(self):
                raise RuntimeError("the job raised")

        return [Raised(), *returns[1:]]

    search.launcher.launch = one_fails
    with pytest.raises(RuntimeError):
        search.sweep(search.arguments)
    assert states(storage) == ["FAIL", "COMPLETE"]


def test_the_trial_folder_is_the_one_the_job_ran_in(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 1)
    launch = search.launcher.launch
    elsewhere = tmp_path / "sweep" / "lr_0"  # hydra.sweep.subdir other than the job number

    def named(overrides, initial_job_idx):
        ran = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(elsewhere)}}})
        # working_dir is the process's cwd (hydra.job.chdir=false), not the job's folder
        returns = launch(overrides, initial_job_idx)
        return [SimpleNamespace(**vars(r), hydra_cfg=ran, working_dir=str(tmp_path)) for r in returns]

    search.launcher.launch = named
    search.sweep(search.arguments)
    assert optuna.load_study(study_name="dapt", storage=storage).trials[0].user_attrs[FOLDER] == str(elsewhere)


def test_a_trial_refused_because_another_process_runs_it_is_not_failed(tmp_path):
    from contextlib import ExitStack

    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 1)
    other = ExitStack()  # the process that took the trial for interrupted first, and runs it still

    def in_use(overrides, initial_job_idx):
        other.enter_context(run_folder_lock(tmp_path / "sweep" / str(initial_job_idx)))
        raise SystemExit(2)  # the job: "run folder in use"

    search.launcher.launch = in_use
    with other, pytest.raises(SystemExit):
        search.sweep(search.arguments)
    assert states(storage) == ["RUNNING"]


@pytest.mark.parametrize("refused", [1, 0])
def test_a_refused_trial_of_a_batch_fails_alone(tmp_path, refused):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"
    basic_launcher_batch(search, {refused})
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    if refused == 1:  # the batch-mate that completed first keeps its value
        assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
        assert trials[0].value == pytest.approx(trials[0].params["optim.lr"])
    else:  # the batch-mate that never started has no value: failed, so the rerun draws another trial
        assert [t.state.name for t in trials] == ["FAIL", "FAIL"]


def test_a_diverged_batch_mate_of_a_refused_trial_counts_as_the_worst_value(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search = sweeper(tmp_path, storage, 2, n_jobs=2)
    search.config.optimized_metric = "val/domain/bpb"
    basic_launcher_batch(search, {1}, diverged=frozenset({0}))
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"] and trials[0].value == float("inf")


@pytest.mark.parametrize("folder", ["never made", "named otherwise"])
def test_a_trial_whose_search_process_died_before_its_job_locked_a_folder_runs_again(tmp_path, folder):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    killed = sweeper(tmp_path, storage, 1)

    def dies(overrides, initial_job_idx):
        if folder == "named otherwise":  # hydra.sweep.subdir: the job ran in a folder the study does not know
            with run_folder_lock(tmp_path / "sweep" / "lr_0"):
                pass
        raise KeyboardInterrupt  # the process is killed: the study keeps trial 0 RUNNING

    killed.launcher.launch = dies
    with pytest.raises(KeyboardInterrupt):
        killed.sweep(killed.arguments)
    assert states(storage) == ["RUNNING"]
    again = sweeper(tmp_path, storage, 1)  # the same command: n_trials counted the RUNNING trial before
    again.sweep(again.arguments)
    assert [number for number, _ in again.launcher.launched] == [0]
    assert states(storage) == ["COMPLETE"]


def test_a_trial_whose_search_process_lives_is_left_to_it_before_its_job_starts(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    second = sweeper(tmp_path, storage, 2)
    first = sweeper(tmp_path, storage, 1)
    queued = first.launcher.launch

    def in_a_queue(overrides, initial_job_idx):  # a SLURM job not started yet: no folder lock
        second.sweep(second.arguments)
        return queued(overrides, initial_job_idx)

    first.launcher.launch = in_a_queue
    first.sweep(first.arguments)
    assert [number for number, _ in second.launcher.launched] == [1]
    assert states(storage) == ["COMPLETE", "COMPLETE"]
