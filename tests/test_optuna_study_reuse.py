"""chipadapt's Optuna sweeper keeps one study one search: a stored study of other settings is refused, and a
rerun continues the study in folders numbered by trial (a trial a killed invocation left RUNNING runs again
in its own folder). Before, a study was joined whatever its settings and job folders restarted at 0; then,
another study's folders were reused and n_trials of a stored study counted extra trials."""

import optuna
import pytest
from helpers.optuna_sweeper import SPACE, killed_trial, sweeper

from chipadapt.optuna_search import check_study, search_settings


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
