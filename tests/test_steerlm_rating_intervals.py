"""The intervals of bootstrap's mean ratings (0-4) say how they were made. All-zero ratings got the
Clopper-Pearson interval of a proportion ([0, 0.46] on 6 prompts) while ci_method said "bootstrap over
prompts", and two settings rated alike were "compared" with Tango's interval for counts."""

from chipadapt.steerlm.rating_intervals import mean_with_interval
from chipadapt.steerlm.setting_figures import by_setting


def figures(values_first, values_second):
    ratings = [{"quality": v} for v in values_first + values_second]
    n = len(values_first)
    return by_setting(
        [{"quality": 4}, {"quality": 0}],
        ratings,
        [0] * n + [1] * n,
        list(range(n)) * 2,
        n,
        ["quality"],
        ["quality"],
    )


def test_all_equal_ratings_are_said_to_have_no_spread():
    first, second = figures([0.0] * 6, [0.0] * 6)
    assert first["mean_rating_ci"]["quality"] == [0.0, 0.0]  # before: [0, 0.459], a proportion's
    assert (
        first["ci_method"]["quality"] == "degenerate: all 6 ratings equal (one per prompt: the bootstrap has no spread)"
    )
    difference = second["minus_first"]["quality"]
    assert difference["ci"] == [0.0, 0.0] and difference["test"].startswith("degenerate: all 6 paired differences 0")


def test_spread_ratings_get_the_bootstrap_over_prompts_on_the_rating_scale():
    first, second = figures([1.0, 2.0, 3.5, 1.5, 2.5, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    low, high = first["mean_rating_ci"]["quality"]
    assert 1.0 <= low < 2.25 < high <= 3.5
    assert first["ci_method"]["quality"].startswith("bootstrap-percentile over prompts")
    # Every setting at 1.0 (a bound of [0, 1] scores, not of 0-4 ratings): no proportion's interval either.
    assert second["mean_rating_ci"]["quality"] == [1.0, 1.0]
    assert second["minus_first"]["quality"]["test"] == "paired-permutation-exact"


def test_annotation_means_carry_an_interval():
    figure = mean_with_interval([0.5, 1.0, 3.0, None], "conversation")
    assert figure["n"] == 3 and figure["ci"][0] < figure["mean"] < figure["ci"][1]
