"""chipadapt's Optuna sweeper keeps one study one search: a stored study of other settings is refused,
a rerun continues the study in folders numbered by trial (a trial a killed invocation left RUNNING runs
again in its own folder), and optimization_results.yaml names ties and the runner-up. Before, a study was
joined whatever its settings, job folders restarted at 0, and the report named Optuna's first best only."""

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import UniformDistribution

from chipadapt.optuna_search import StudySweeper, check_study, report, search_settings

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"optim.lr": UniformDistribution(0.0, 1.0)}


class FakeLauncher:
    """Runs no job: records the job index each trial was launched at and returns a value from its params."""

    def __init__(self):
        self.launched: list[tuple[int, tuple]] = []

    def launch(self, overrides, initial_job_idx):
        self.launched.extend((initial_job_idx + i, o) for i, o in enumerate(overrides))
        lr = [float(dict(line.split("=", 1) for line in o)["optim.lr"]) for o in overrides]
        return [SimpleNamespace(return_value=(x - 0.3) ** 2) for x in lr]


def sweeper(tmp_path: Path, storage: str | None, n_trials: int, fixed: str = "trainer.max_steps=2") -> StudySweeper:
    sampler = optuna.samplers.TPESampler(seed=1234, n_startup_trials=5)
    search = StudySweeper(sampler, "minimize", storage, "dapt", n_trials, 1, None, None, OmegaConf.create({}))
    search.config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}, "sweeper": {"sampler": {"seed": 1234}}}}
    )
    search.launcher = FakeLauncher()
    search.arguments = ["optim.lr=interval(0,1)", fixed]
    return search


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


def test_a_rerun_continues_the_study_and_reruns_an_interrupted_trial_in_its_own_folder(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = sweeper(tmp_path, storage, 2)
    first.sweep(first.arguments)
    study = optuna.load_study(study_name="dapt", storage=storage)
    killed = study.ask()  # a trial a killed invocation was running
    killed.suggest_float("optim.lr", 0.0, 1.0)
    again = sweeper(tmp_path, storage, 2)
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
    assert results.runner_up.number == 1
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
