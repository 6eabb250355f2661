"""optimization_results.yaml of chipadapt's Optuna sweeper names ties and the runner-up, says when the merge
sweep report chooses another trial, and on which items the chosen figure was measured. Before, the report
named Optuna's first best only; then, a trial without a recorded folder was paired against the working
directory."""

import optuna
import pytest
from helpers.optuna_sweeper import SPACE
from omegaconf import OmegaConf
from optuna.distributions import UniformDistribution

from chipadapt.optuna_results import report


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
