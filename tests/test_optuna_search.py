"""chipadapt's Optuna sweeper keeps one study one search: a stored study of other settings is refused,
a rerun continues the study in folders numbered by trial (a trial a killed invocation left RUNNING runs
again in its own folder), and optimization_results.yaml names ties and the runner-up. Before, a study was
joined whatever its settings, job folders restarted at 0, and the report named Optuna's first best only.
Then: a second process on the study ran the first's trial again, a trial whose job refused its input stayed
RUNNING and blocked the fixed rerun, another study's folders were reused, n_trials of a stored study counted
extra trials, and a trial without a recorded folder was paired against the working directory."""

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from omegaconf import OmegaConf
from optuna.distributions import UniformDistribution

from chipadapt.io.lock import run_folder_lock
from chipadapt.optuna_results import FOLDER, report
from chipadapt.optuna_search import StudySweeper, check_study, search_settings

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"optim.lr": UniformDistribution(0.0, 1.0)}


class FakeLauncher(BasicLauncher):
    """Hydra's basic launcher (it runs the jobs in the search process), running no training: records the
    job index each trial was launched at, makes its folder as a job does
    (under its run lock, with a manifest) and returns a value from its params. `during(index)` runs while
    the job holds its folder (another process at work meanwhile); it may raise, as a refusing job exits."""

    def __init__(self, sweep_dir: Path, during=None):
        super().__init__()
        self.sweep_dir, self.during = sweep_dir, during
        self.launched: list[tuple[int, tuple]] = []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for index, override in enumerate(overrides, start=initial_job_idx):
            self.launched.append((index, override))
            with run_folder_lock(self.sweep_dir / str(index)):
                if self.during:
                    self.during(index)
                (self.sweep_dir / str(index) / "manifest.json").write_text("{}")
            x = float(dict(line.split("=", 1) for line in override)["optim.lr"])
            returns.append(SimpleNamespace(return_value=(x - 0.3) ** 2))
        return returns


def sweeper(
    tmp_path: Path,
    storage: str | None,
    n_trials: int,
    fixed: str = "trainer.max_steps=2",
    sweep: str = "sweep",
    name: str = "dapt",
    n_jobs: int = 1,
) -> StudySweeper:
    sampler = optuna.samplers.TPESampler(seed=1234, n_startup_trials=5)
    search = StudySweeper(sampler, "minimize", storage, name, n_trials, n_jobs, None, None, OmegaConf.create({}))
    search.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path / sweep)}, "sweeper": {"sampler": {"seed": 1234}}}}
    )
    search.launcher = FakeLauncher(tmp_path / sweep)
    search.arguments = ["optim.lr=interval(0,1)", fixed]
    return search


def states(storage: str) -> list[str]:
    return [t.state.name for t in optuna.load_study(study_name="dapt", storage=storage).trials]


def test_a_stored_study_of_other_fixed_settings_is_refused_naming_the_setting(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 1)
    first.sweep(first.arguments)
    other = sweeper(tmp_path, storage, 1, fixed="trainer.max_steps=30")
    with pytest.raises(SystemExit) as stop:
        other.sweep(other.arguments)
    assert stop.value.code == 2
    said = capsys.readouterr().err
    assert "trainer.max_steps: 2 in the study, 30 in this search" in said and "study_name" in said
    assert not other.launcher.launched  # refused before its first trial


def test_a_study_stored_without_settings_is_judged_by_its_trials():
    study = optuna.create_study(direction="minimize")
    trial = study.ask()
    trial.suggest_float("optim.lr", 0.0, 1.0)
    trial.set_user_attr("trainer.max_steps", "30")
    study.tell(trial, 1.0)
    with pytest.raises(SystemExit):
        check_study(study, search_settings(["minimize"], SPACE, {"trainer.max_steps": "2"}), "dapt")


def killed_trial(tmp_path: Path, storage: str, jobs_here: bool) -> optuna.trial.Trial:
    """A trial a killed invocation was running: its job took its folder's lock, and died (or, under SLURM,
    was requeued: its lock is free as well); the search process's claim is released."""
    from chipadapt.optuna_resume import CLAIM, JOBS_HERE

    study = optuna.load_study(study_name="dapt", storage=storage)
    killed = study.ask()
    killed.suggest_float("optim.lr", 0.0, 1.0)
    killed.set_user_attr(FOLDER, str(tmp_path / "sweep" / "2"))
    killed.set_user_attr(CLAIM, str(tmp_path / "sweep" / ".optuna_searches" / "dead"))
    killed.set_user_attr(JOBS_HERE, jobs_here)
    for folder in (tmp_path / "sweep" / "2", tmp_path / "sweep" / ".optuna_searches" / "dead"):
        with run_folder_lock(folder):
            pass
    return killed


def test_a_rerun_continues_the_study_and_reruns_an_interrupted_trial_in_its_own_folder(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 2)
    first.sweep(first.arguments)
    killed = killed_trial(tmp_path, storage, jobs_here=True)
    again = sweeper(tmp_path, storage, 4)  # n_trials: the study's total, as the first command would say
    again.sweep(again.arguments)
    numbers = [number for number, _ in again.launcher.launched]
    assert numbers == [2, 3]  # the job folders are the trials' numbers, not 0 and 1 again
    assert f"optim.lr={killed.params['optim.lr']}" in again.launcher.launched[0][1]
    trials = optuna.load_study(study_name="dapt", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    lrs = [t.params["optim.lr"] for t in trials]
    assert len(set(lrs)) == 4  # the seeded start-up trials are not drawn again


def test_an_in_memory_rerun_with_fewer_trials_than_its_folder_holds_is_refused(tmp_path, capsys):
    for number in (0, 1):
        (tmp_path / "sweep" / str(number)).mkdir(parents=True)
        (tmp_path / "sweep" / str(number) / "manifest.json").write_text("{}")
    search = sweeper(tmp_path, None, 1)
    with pytest.raises(SystemExit):
        search.sweep(search.arguments)
    assert "holds 2 finished trials and hydra.sweeper.n_trials=1" in capsys.readouterr().err


def test_the_results_name_tied_trials_and_the_runner_up(tmp_path):
    study = optuna.create_study(direction="maximize")
    for lr, value in ((0.19, 0.0), (0.62, 0.0), (0.44, -1.0)):
        study.add_trial(
            optuna.trial.create_trial(params={"lam": lr}, distributions={"lam": SPACE["optim.lr"]}, value=value)
        )
    config = OmegaConf.create({"optimized_metric": "ifeval.prompt_loose", "hydra": {}})
    report(study, tmp_path, ["maximize"], config)
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert [t.number for t in results.tied_best] == [0, 1]
    assert results.runner_up.number == 2  # not #1, tied with the best
    assert results.versus_runner_up.paired is False and results.versus_runner_up.reason


def test_the_end_says_when_the_merge_sweep_report_chooses_another_trial(tmp_path, caplog):
    import json

    study = optuna.create_study(direction="maximize")
    lam = UniformDistribution(0.0, 1.0)
    for number, (x, bpb) in enumerate(((0.19, 4.73), (0.62, 4.70))):
        folder = tmp_path / str(number)
        folder.mkdir()
        results = {"ifeval": {"prompt_loose": 0.0}, "perplexity": {"domain": {"bpb": bpb}}}
        (folder / "results.json").write_text(json.dumps({**results, "perplexity": {"domain.bpb": bpb}}))
        attrs = {"chipadapt_folder": str(folder)}
        study.add_trial(
            optuna.trial.create_trial(
                params={"merge.lam": x}, distributions={"merge.lam": lam}, value=0.0, user_attrs=attrs
            )
        )
    lambda_sweep = {"domain_metric": "perplexity.domain.bpb", "domain_higher_is_better": False}
    config = OmegaConf.create(
        {
            "optimized_metric": "ifeval.prompt_loose",
            "hydra": {"callbacks": {"lambda_sweep": {**lambda_sweep, "instruct_metric": "ifeval.prompt_loose"}}},
        }
    )
    report(study, tmp_path, ["maximize"], config)
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").merge_sweep_report_choice == "1"
    assert "the merge sweep report (sweep_report.json) chooses job 1" in caplog.text


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


def test_a_sweep_folder_holding_another_studys_trials_is_refused(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 1)
    first.sweep(first.arguments)
    other = sweeper(tmp_path, storage, 1, name="dapt2")
    with pytest.raises(SystemExit) as stop:
        other.sweep(other.arguments)
    assert stop.value.code == 2
    said = capsys.readouterr().err
    assert "holds the trial folders of 'dapt' (0)" in said and "another hydra.sweep.dir" in said
    assert not other.launcher.launched


def test_the_study_advice_names_another_sweep_folder_too(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 1)
    first.sweep(first.arguments)
    other = sweeper(tmp_path, storage, 1, fixed="trainer.max_steps=30")
    with pytest.raises(SystemExit):
        other.sweep(other.arguments)
    assert "with another hydra.sweep.dir" in capsys.readouterr().err


def test_n_trials_is_the_stored_studys_total(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 2)
    first.sweep(first.arguments)
    same = sweeper(tmp_path, storage, 2)  # the same command again: the study is complete
    same.sweep(same.arguments)
    assert same.launcher.launched == []
    more = sweeper(tmp_path, storage, 3)
    more.sweep(more.arguments)
    assert [number for number, _ in more.launcher.launched] == [2]


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


def test_trials_without_a_recorded_folder_are_not_paired_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = optuna.create_study(direction="minimize")
    for x, value in ((0.1, 1.0), (0.2, 2.0)):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": x}, distributions=SPACE, value=value))
    report(study, tmp_path, ["minimize"], OmegaConf.create({"optimized_metric": "val/domain/bpb", "hydra": {}}))
    reason = OmegaConf.load(tmp_path / "optimization_results.yaml").versus_runner_up.reason
    assert "no recorded job folder" in reason


def test_diverged_trials_tied_at_the_worst_value_are_said_to_have_diverged(tmp_path):
    study = optuna.create_study(direction="minimize")
    for x in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": x}, distributions=SPACE, value=float("inf")))
    report(study, tmp_path, ["minimize"], OmegaConf.create({"optimized_metric": "val/domain/bpb", "hydra": {}}))
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert "diverged" in results.note and str(results.runner_up).startswith("tied")


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


def basic_launcher_batch(
    search: StudySweeper, refused: set[int], diverged: frozenset[int] = frozenset(), folder_name=str
):
    """Hydra's basic launcher runs a batch's jobs one after the other in this process: a job that refuses
    its input (exit 2) ends the launch, and the values of the jobs before it are never returned."""
    import datetime as dt
    import json

    def launch(overrides, initial_job_idx):
        for index, override in enumerate(overrides, start=initial_job_idx):
            if index in refused:
                raise SystemExit(2)
            folder = search.launcher.sweep_dir / folder_name(index)
            with run_folder_lock(folder):
                x = float(dict(line.split("=", 1) for line in override)["optim.lr"])
                done = {"status": "completed", "error": None, "metrics": {"after": {"domain": {"bpb": x}}}}
                if index in diverged:
                    done = {"status": "failed", "error": "TrainingDiverged: training diverged: loss is nan"}
                started = dt.datetime.now().isoformat(timespec="seconds")
                manifest = {"kind": "train", "overrides": list(override), "started": started, "config": {}, **done}
                (folder / "manifest.json").write_text(json.dumps(manifest))
        raise AssertionError("a batch with a refused job ends in SystemExit")

    search.launcher.launch = launch


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


@pytest.mark.parametrize(
    "metric, setting, items",
    [
        ("ifeval.prompt_loose", {"eval": {"ifeval": {"limit": 50}}}, "the first 50 items of eval task 'ifeval'"),
        ("val/domain/bpb", {"data": {"val_fraction": 0.15}}, "split 'domain' (data.val_fraction=0.15)"),
    ],
)
def test_the_results_say_the_chosen_figure_is_measured_on_the_items_it_was_chosen_on(
    tmp_path, caplog, metric, setting, items
):
    study = optuna.create_study(direction="minimize")
    for x, value in ((0.1, 1.0), (0.2, 2.0)):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": x}, distributions=SPACE, value=value))
    report(study, tmp_path, ["minimize"], OmegaConf.create({"optimized_metric": metric, "hydra": {}, **setting}))
    said = OmegaConf.load(tmp_path / "optimization_results.yaml").selection_bias
    assert items in said and "of 2 trial(s)" in said and "not an unbiased estimate" in said
    assert said in caplog.text  # on the console too
