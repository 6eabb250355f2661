"""The SteerLM figures with their uncertainty: the attribute model's MAE/Spearman and bootstrap's mean
ratings had no intervals nor paired tests (found by a new user's trial on their own data)."""

import json

import numpy as np
import pytest
from helpers.steerlm_own_data import trained_attribute_model


@pytest.fixture(scope="module")
def steer(tmp_path_factory):
    """The user's data and the attribute model trained on it (helpers.steerlm_own_data)."""
    return trained_attribute_model(tmp_path_factory)


def test_attribute_figures_carry_intervals_a_paired_baseline_test_and_an_undefined_spearman():
    from chipadapt.modules.attribute_figures import attribute_figures

    labels = [0, 1, 2, 3, 4, 4, 3, 2]
    good = attribute_figures([0.2, 1.1, 2.0, 2.9, 3.8, 4.0, 3.1, 2.2], labels, baseline=2.375)
    assert good["mae_ci"][0] <= good["mae"] <= good["mae_ci"][1] and good["mae_n"] == 8
    assert good["baseline_mae_ci"][0] <= good["baseline_mae"] <= good["baseline_mae_ci"][1]
    paired = good["mae_minus_baseline"]
    assert paired["difference"] == pytest.approx(good["mae"] - good["baseline_mae"])
    assert paired["test"] == "paired-permutation-exact" and paired["verdict"] == "lower" and paired["p"] < 0.05
    assert good["spearman"] > 0.9 and -1 <= good["spearman_ci"][0] < good["spearman"] < good["spearman_ci"][1] <= 1
    assert "spearman_undefined" not in good

    flat = attribute_figures([0.5] * 8, labels, baseline=2.375)  # a model that predicts one value
    assert flat["spearman"] is None and flat["spearman_ci"] is None  # was +0.000
    assert flat["spearman_undefined"] == "every prediction is 0.500: the model ranks nothing"
    tied = attribute_figures([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [3] * 8, baseline=3.0)
    assert tied["spearman"] is None and tied["spearman_undefined"].startswith("every label is 3")


def test_the_attribute_models_manifest_and_table_carry_the_intervals(steer):
    val = json.loads((steer["attr"] / "manifest.json").read_text())["metrics"]["val"]
    assert set(val) <= {"quality", "helpfulness", "humor"} and val  # untrained heads have no held-out labels
    for figures in val.values():
        assert len(figures["mae_ci"]) == 2 and len(figures["baseline_mae_ci"]) == 2
        assert figures["mae_minus_baseline"]["n"] == figures["n"]
        assert figures["spearman"] is None or len(figures["spearman_ci"]) == 2


def test_setting_figures_pair_the_settings_on_the_same_prompts():
    from chipadapt.steerlm.setting_figures import by_setting

    prompts, per_setting = 8, 2
    ratings, setting_of, prompt_of = [], [], []
    for p in range(prompts):
        for s in range(2):
            for k in range(per_setting):
                ratings.append({"quality": p * 1.0 + s * 1.0 + k * 0.1, "toxicity": None})
                setting_of.append(s)
                prompt_of.append(p)
    first, second = by_setting(
        [{"quality": 1}, {"quality": 4}], ratings, setting_of, prompt_of, prompts, ["quality", "toxicity"], ["quality"]
    )
    assert first["replies"] == second["replies"] == 16
    assert first["mean_rating"]["quality"] == pytest.approx(
        np.mean([r["quality"] for r, s in zip(ratings, setting_of) if s == 0])
    )
    low, high = first["mean_rating_ci"]["quality"]
    assert low < first["mean_rating"]["quality"] < high
    assert first["mean_rating"]["toxicity"] is None and "minus_first" not in first
    paired = second["minus_first"]["quality"]
    # Every prompt one point higher: the paired test sees it on 8 prompts, where the intervals overlap.
    assert paired["difference"] == pytest.approx(1.0) and paired["verdict"] == "higher" and paired["n"] == 8
    assert paired["p"] == pytest.approx(2 / 2**8)
    assert second["mean_rating_ci"]["quality"][0] < first["mean_rating_ci"]["quality"][1]
