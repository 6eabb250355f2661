"""How sure a metric is (eval/intervals.py, eval/items.py) and two runs compared item by item
(eval/paired.py, compare.py's paired section)."""

import json
import math

import numpy as np
import pytest
from conftest import write_jsonl
from omegaconf import OmegaConf


def test_clopper_pearson_matches_the_textbook_values():
    from chipadapt.eval.intervals import clopper_pearson, proportion

    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    # 0 or n successes: the closed forms (alpha/2)^(1/n)
    assert clopper_pearson(0, 20) == (0.0, pytest.approx(1 - 0.025 ** (1 / 20)))
    assert clopper_pearson(20, 20) == (pytest.approx(0.025 ** (1 / 20)), 1.0)
    est = proportion([True] * 47 + [False] * 124)  # the MMLU figure of issue 24: 0.2749 on 171 questions
    assert est.value == pytest.approx(0.2749, abs=1e-4) and est.n == 171
    assert est.stderr == pytest.approx(math.sqrt(est.value * (1 - est.value) / 170))  # lm-eval's acc_stderr
    assert est.ci[0] < est.value < est.ci[1] and est.method == "clopper-pearson"


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    from chipadapt.eval.intervals import ratio

    rng = np.random.default_rng(7)
    trials, covered = 200, 0
    for t in range(trials):
        sample = rng.exponential(1.0, size=60)  # skewed, true mean 1
        est = ratio(list(sample), resamples=500, seed=t)
        covered += est.ci[0] <= 1.0 <= est.ci[1]
        assert est.stderr == pytest.approx(sample.std(ddof=1) / math.sqrt(60))
    assert 0.88 <= covered / trials <= 0.99


def test_ratio_of_sums_and_its_exp_and_the_stratified_mean():
    from chipadapt.eval.intervals import mean_of_ratios, ratio

    # six items: the fewest a sign-flip interval bounds at 95% (eval/intervals.py)
    est = ratio([3.0, 4.0, 5.0, 3.5, 4.5, 6.0], [10.0, 10.0, 12.0, 9.0, 11.0, 13.0])
    assert est.value == pytest.approx(26 / 65) and est.ci[0] < est.value < est.ci[1]
    ppl = ratio([3.0, 4.0, 5.0, 3.5, 4.5, 6.0], [10.0, 10.0, 12.0, 9.0, 11.0, 13.0], "exp")
    assert ppl.value == pytest.approx(math.exp(26 / 65)) and ppl.ci == pytest.approx(tuple(math.exp(x) for x in est.ci))
    few = ratio([3.0, 4.0, 5.0], [10.0, 10.0, 12.0], "exp")
    assert few.ci == (-math.inf, math.inf) and few.method.startswith("interval n/a: n=3, too few")
    both = mean_of_ratios([([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), ([2.0, 2.0], [3.0, 3.0])])
    assert both.value == pytest.approx((6 / 15 + 4 / 6) / 2) and both.n == 5


def test_summarize_reads_the_kind_of_metric_from_the_score_form():
    from chipadapt.eval.items import estimate, summarize

    items = [
        {"id": str(i), "scores": {"acc": i % 2 == 0, "rouge": i / 10, "inst": {"num": i % 3, "den": 2}}}
        for i in range(10)
    ]
    items[0]["scores"]["only_some"] = 1.0
    fields = summarize(items)
    assert fields["acc"] == 0.5 and fields["acc_ci_method"] == "clopper-pearson" and fields["acc_n"] == 10
    assert fields["rouge"] == pytest.approx(0.45) and fields["rouge_ci_method"].startswith(
        "sign-flip test inverted (mean"
    )
    assert fields["inst"] == pytest.approx(sum(i % 3 for i in range(10)) / 20)
    assert fields["only_some_n"] == 1 and fields["only_some_stderr"] is None
    with pytest.raises(ValueError, match="mixed forms"):
        estimate([True, 0.5])


def test_mcnemar_on_a_hand_computed_table():
    from chipadapt.eval.paired import mcnemar

    # 20 items: 10 both right, 3 both wrong, 1 right only in a, 6 right only in b.
    a = [True] * 10 + [False] * 3 + [True] + [False] * 6
    b = [True] * 10 + [False] * 3 + [False] + [True] * 6
    d = mcnemar(a, b)
    assert d.diff == pytest.approx(5 / 20) and d.a == pytest.approx(11 / 20) and d.b == pytest.approx(16 / 20)
    # 7 discordant items: the exact binomial p, 2 * P(X <= 1 | 7, 1/2) = 2 * 8 / 128
    assert d.p == pytest.approx(0.125) and d.p_method == "exact binomial"
    assert d.verdict == "within noise" and d.ci[0] < 0 < d.ci[1] and (d.first_only, d.this_only) == (1, 6)
    # 8 gained, none lost: exact p = 2 / 2**8, and the interval leaves 0 out
    strong = mcnemar([False] * 8 + [True] * 4, [True] * 12)
    assert strong.p == pytest.approx(2 / 256) and strong.ci[0] > 0 and strong.verdict == "higher"
    # 30 discordant items: McNemar's score test, (20 - 10) / sqrt(30) = 1.83
    many = mcnemar([False] * 20 + [True] * 10, [True] * 20 + [False] * 10)
    assert many.p_method == "score" and many.p == pytest.approx(0.067889, abs=1e-5)
    same = mcnemar([True, False], [True, False])
    assert same.diff == 0 and same.p == 1.0 and same.verdict == "within noise"


def test_mcnemar_interval_is_tangos_and_two_sided_when_all_discordant_items_go_one_way():
    from scipy.stats import norm

    from chipadapt.eval.paired import _tango_statistic, mcnemar

    # 2 gained, none lost, of 108 (the reproduction's retriever row): the exact conditional interval
    # was [-0.013, +0.019], ending at the estimate; a gain of a few more questions is as plausible.
    d = mcnemar([True] * 95 + [False] * 13, [True] * 97 + [False] * 11)
    assert d.diff == pytest.approx(2 / 108) and d.ci[0] < 0 and d.ci[1] > 3 * d.diff
    assert (round(d.ci[0], 4), round(d.ci[1], 4)) == (-0.0165, 0.0650)
    z = norm.ppf(0.975)  # each end is where the score statistic meets the normal quantile
    assert _tango_statistic(2, 0, 108, d.ci[0]) == pytest.approx(z) and _tango_statistic(
        2, 0, 108, d.ci[1]
    ) == pytest.approx(-z)
    # identical verdicts on every item: no difference seen, but not a certain zero either
    same = mcnemar([True] * 50 + [False] * 50, [True] * 50 + [False] * 50)
    assert same.ci == pytest.approx((-(z**2) / (100 + z**2), z**2 / (100 + z**2)))


def test_the_interval_and_the_p_value_of_mcnemar_never_disagree():
    from chipadapt.eval.paired import mcnemar

    for gained in range(0, 15):
        for lost in range(0, 15):
            a = [False] * gained + [True] * lost + [True] * 5
            b = [True] * gained + [False] * lost + [True] * 5
            d = mcnemar(a, b)
            covers = d.ci[0] <= 0 <= d.ci[1]
            # "higher"/"lower" only where both the interval and p reject; where they disagree (the exact p
            # of few discordant items against Tango's interval) the row carries a note that says so
            assert (d.verdict == "within noise") == (covers or d.p >= 0.05 - 1e-12), (gained, lost, d)
            assert bool(d.note) == (covers != (d.p >= 0.05 - 1e-12)), (gained, lost, d)
            assert d.verdict == "within noise" or gained + lost >= 6  # the exact test's floor
            wide = mcnemar(a, b, confidence=0.9)  # at another level, p is read against 1 - confidence
            assert (wide.verdict == "within noise") == (wide.ci[0] <= 0 <= wide.ci[1] or wide.p >= 0.1 - 1e-12)
    # 4 of 4 one way: Tango's interval leaves 0 out, the exact p is 0.125; within noise, and the note says why
    four = mcnemar([False] * 4 + [True] * 6, [True] * 10)
    assert four.p == pytest.approx(0.125) and four.ci[0] > 0 and four.verdict == "within noise"
    assert "exact McNemar" in four.note


def test_paired_bootstrap_finds_a_small_consistent_gain_that_independent_intervals_miss():
    from chipadapt.eval.items import summarize
    from chipadapt.eval.paired import paired_difference

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 80)  # item difficulty dominates the spread
    a = {f"q{i}": {"scores": {"rougeL": float(x)}} for i, x in enumerate(base)}
    b = {f"q{i}": {"scores": {"rougeL": float(x + 0.03 + rng.normal(0, 0.02))}} for i, x in enumerate(base)}
    sa, sb = summarize(list(a.values())), summarize(list(b.values()))
    assert sa["rougeL_ci"][1] > sb["rougeL_ci"][0]  # the two intervals overlap ...
    d = paired_difference(a, b, "rougeL")
    assert d.verdict == "higher" and d.ci[0] > 0 and d.p < 0.01 and d.n == 80  # ... the paired test resolves it
    # matched on id: items only one run has, and the order of the file, do not matter
    b_shuffled = dict(reversed(list(b.items())))
    b_shuffled["extra"] = {"scores": {"rougeL": 1.0}}
    assert paired_difference(a, b_shuffled, "rougeL").diff == pytest.approx(d.diff)
    assert paired_difference(a, a, "rougeL").verdict == "within noise"
    ratio_a = {k: {"scores": {"bpb": {"num": 2.0 * v["scores"]["rougeL"], "den": 1.0}}} for k, v in a.items()}
    assert paired_difference(ratio_a, ratio_a, "bpb").diff == 0.0


def _run_folder(path, values: dict[str, bool], rouge: dict[str, float]):
    path.mkdir(parents=True)
    items = [
        {"id": k, "prediction": None, "reference": None, "scores": {"acc": v, "rougeL": rouge[k]}}
        for k, v in values.items()
    ]
    write_jsonl(path / "mcq_items.jsonl", items)
    from chipadapt.eval.items import summarize

    (path / "results.json").write_text(json.dumps({"mcq": {**summarize(items), "questions": len(items)}}))
    return path


def test_compare_prints_paired_differences_against_the_first_run(tmp_path, capsys):
    from chipadapt.eval.compare import compare

    ids = [f"q{i}" for i in range(40)]
    base = _run_folder(tmp_path / "base", {k: i % 2 == 0 for i, k in enumerate(ids)}, {k: 0.2 for k in ids})
    same = _run_folder(tmp_path / "same", {k: i % 2 == 0 for i, k in enumerate(ids)}, {k: 0.2 for k in ids})
    better = _run_folder(
        tmp_path / "better", {k: True for k in ids}, {k: 0.2 + 0.01 * (i % 3) for i, k in enumerate(ids)}
    )
    cfg = OmegaConf.create(
        {
            "runs": [str(base), str(same), str(better)],
            "labels": ["base", "same", "better"],
            "metrics": None,
            "x": None,
            "output": str(tmp_path / "cmp"),
            "overwrite": False,
            "paths": {"output_dir": str(tmp_path / "cmp")},  # the run's own folder, as by default
            "max_plot_metrics": 4,
        }
    )
    summary = compare(cfg)
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "acc_stderr" not in table and "acc_n" not in table  # a metric's siblings are not metrics
    rows = {(r["run"], r["metric"]): r for r in summary["paired"]}
    assert rows[("same", "mcq.acc")]["verdict"] == "within noise" and rows[("same", "mcq.acc")]["p"] == 1.0
    acc = rows[("better", "mcq.acc")]
    assert acc["test"] == "mcnemar-tango" and acc["difference"] == pytest.approx(0.5) and acc["verdict"] == "higher"
    assert (
        rows[("better", "mcq.rougeL")]["test"] == "paired-permutation-random"
        and rows[("better", "mcq.rougeL")]["verdict"] == "higher"
    )
    paired_md = (tmp_path / "cmp" / "compare_paired.md").read_text()
    assert "| better | base | mcq.acc | 40 |" in paired_md and "within noise" in paired_md
    assert "Paired differences against base" in capsys.readouterr().out


def test_parts_passed_that_are_all_zero_get_the_exact_interval_over_items_not_a_point():
    from chipadapt.eval.intervals import clopper_pearson, ratio

    none_followed = ratio([0, 0, 0, 0, 0], [2, 1, 3, 1, 2])  # 5 prompts, none of their 9 instructions followed
    assert none_followed.value == 0 and none_followed.ci == clopper_pearson(0, 5) and none_followed.ci[1] > 0.4
    all_followed = ratio([2, 1, 3], [2, 1, 3])
    assert all_followed.value == 1 and all_followed.ci == clopper_pearson(3, 3)
    mixed = ratio([0, 1, 3, 0, 2, 1], [2, 1, 3, 1, 2, 2])
    assert mixed.method.startswith("sign-flip") and mixed.ci[0] < mixed.value < mixed.ci[1]
    bits = ratio([10.5, 10.5], [10.0, 12.0])  # not counts of parts passed, and two items: no interval
    assert bits.method.startswith("interval n/a: n=2, too few") and bits.ci == (-math.inf, math.inf)


def test_one_item_per_group_resamples_the_groups_and_one_item_alone_has_no_interval():
    from chipadapt.eval.intervals import mean_of_ratios, ratio
    from chipadapt.eval.items import metric_fields
    from chipadapt.eval.paired import paired_mean_of_ratios

    # corpus_ppl at a small max_tokens: one block of text per source
    est = mean_of_ratios(
        [([5.0], [1.0]), ([6.0], [1.0]), ([4.5], [1.0]), ([5.5], [1.0]), ([5.2], [1.0]), ([4.8], [1.0])]
    )
    assert est.value == pytest.approx(31 / 6) and est.ci[0] < est.value < est.ci[1] and "one item each" in est.method
    four = mean_of_ratios([([5.0], [1.0]), ([6.0], [1.0]), ([4.5], [1.0]), ([5.5], [1.0])])
    assert four.value == pytest.approx(5.25) and four.ci == (-math.inf, math.inf)  # 4 draws: too few
    base = [([5.0 + (g % 4) / 2], [1.0]) for g in range(20)]
    other = [([4.0 + (g % 4) / 2 + (g % 3) / 10], [1.0]) for g in range(20)]
    d = paired_mean_of_ratios([(a_num, a_den, b_num, b_den) for (a_num, a_den), (b_num, b_den) in zip(base, other)])
    assert d.test == "paired-permutation-random (one item per group)"
    assert d.diff == pytest.approx(-0.905) and d.ci[0] < d.diff < d.ci[1] < 0
    # four groups: the exact permutation test over their four differences (all one way: p = 2 / 2**4)
    four = paired_mean_of_ratios(
        [(a_num, a_den, b_num, b_den) for (a_num, a_den), (b_num, b_den) in zip(base, other)][:4]
    )
    assert four.test == "paired-permutation-exact (one item per group)" and four.p == 0.125
    assert four.verdict == "within noise"
    one = metric_fields("openroad.ppl", ratio([5.0], [1.0], "exp"))
    assert one["openroad.ppl_ci"] is None or all(math.isinf(x) for x in one["openroad.ppl_ci"])
    assert one["openroad.ppl_ci_method"].startswith("interval n/a:")


def _documents(bpb: list[float], tokens: int = 300) -> dict[str, dict]:
    """corpus_ppl-like items: each document's bits per byte as {num: bits, den: bytes}."""
    return {
        f"d{i}": {"scores": {"bpb": {"num": v * (tokens + 7 * i), "den": tokens + 7 * i}}} for i, v in enumerate(bpb)
    }


def test_four_documents_all_one_way_are_within_noise_by_the_exact_permutation_test():
    from chipadapt.eval.paired import paired_difference

    # The user's case: 4 documents, every one lower, was "p=0.001 | lower" by the bootstrap.
    d = paired_difference(_documents([1.20, 1.31, 1.25, 1.40]), _documents([0.81, 0.92, 0.87, 1.02]), "bpb")
    assert d.test == "paired-permutation-exact" and d.n == 4 and d.diff < -0.38
    assert d.p == 0.125  # 2 of the 16 swaps are as extreme: the observed one and its mirror
    assert d.verdict == "within noise" and d.ci == (-math.inf, math.inf)  # no 95% interval from 4 items
    # perplexity (exp of the rate): the same test, its interval mapped through exp at the first run's rate
    per_item = {
        k: {"scores": {"ppl": {**v["scores"]["bpb"], "transform": "exp"}}} for k, v in _documents([1.2] * 8).items()
    }
    lower = {
        k: {"scores": {"ppl": {**v["scores"]["bpb"], "transform": "exp"}}} for k, v in _documents([1.0] * 8).items()
    }
    ppl = paired_difference(per_item, lower, "ppl")
    assert ppl.p == pytest.approx(2 / 2**8) and ppl.verdict == "lower" and ppl.ci[0] <= ppl.diff <= ppl.ci[1] < 0


def test_the_exact_test_matches_enumeration_and_its_interval_agrees_with_its_p_value():
    import itertools

    from chipadapt.eval.paired import EXACT_MAX_ITEMS, paired_bootstrap

    rng = np.random.default_rng(1)
    for n in (1, 3, 6, 8, 11, EXACT_MAX_ITEMS):
        for trial in range(4):
            diffs = rng.normal(0.25 * trial, 0.5, n)
            d = paired_bootstrap(np.zeros(n), np.ones(n), diffs, np.ones(n))
            flipped = [float(np.mean(np.array(signs) * diffs)) for signs in itertools.product((1, -1), repeat=n)]
            up = sum(t >= diffs.mean() - 1e-12 for t in flipped)
            down = sum(t <= diffs.mean() + 1e-12 for t in flipped)
            assert d.p == pytest.approx(min(1.0, 2 * min(up, down) / 2**n)), (n, trial)
            assert (d.ci[0] <= 0 <= d.ci[1]) == (d.p >= 0.05), (n, trial, d)
            assert (d.verdict == "within noise") == (d.p >= 0.05), (n, trial, d)
    # a ratio of sums over documents of different lengths: the mean of per-document differences weighted by bytes
    d = paired_bootstrap(
        [3.0, 5.0, 4.0, 6.0, 2.0, 5.5], [4, 6, 5, 7, 3, 6], [2.0, 4.0, 3.1, 5.0, 1.5, 4.0], [4, 6, 5, 7, 3, 6]
    )
    assert d.test == "paired-permutation-exact" and d.p == pytest.approx(2 / 64) and d.verdict == "lower"


def test_the_paired_test_over_more_than_16_items_is_the_random_sign_flip_test():
    from chipadapt.eval.paired import paired_bootstrap, paired_mean_of_ratios

    # 30 documents: pinned values of the seeded random swaps (the paired bootstrap, which they replaced,
    # gave p 0.018 [-0.0655, -0.0047]: narrower, as its undercoverage above 16 items made it)
    rng = np.random.default_rng(3)
    den = rng.integers(200, 400, 30).astype(float)
    a = rng.uniform(0.8, 1.4, 30)
    b = a + rng.normal(-0.02, 0.08, 30)
    d = paired_bootstrap(a * den, den, b * den, den)
    assert d.test == "paired-permutation-random" and d.n == 30 and d.verdict == "lower"
    assert d.diff == pytest.approx(-0.03385830472787332, abs=1e-15) and d.p == pytest.approx(0.038)
    assert d.ci == pytest.approx((-0.0671122343513182, -0.0010468320414171626), abs=1e-12)
    halves = [(a[h] * den[h], den[h], b[h] * den[h], den[h]) for h in (slice(0, 15), slice(15, 30))]
    g = paired_mean_of_ratios(halves)
    assert g.test == "paired-permutation-random (stratified by group)" and g.p == pytest.approx(0.041)
    assert g.ci == pytest.approx((-0.06671727452098203, -0.0009147423303270492), abs=1e-12)


def test_the_paired_baseline_is_the_first_run_named_even_when_a_swept_key_orders_the_tables(tmp_path):
    from chipadapt.eval.compare import compare

    ids = [f"q{i}" for i in range(20)]
    runs = []
    for name, limit in (("first", "20"), ("second", "8")):  # sorted along eval.mcq.limit, "second" comes first
        folder = _run_folder(tmp_path / name, {k: i % 2 == 0 for i, k in enumerate(ids)}, {k: 0.2 for k in ids})
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(f"- eval.mcq.limit={limit}\n")
        runs.append(str(folder))
    cfg = OmegaConf.create(
        {
            "runs": runs,
            "labels": None,
            "metrics": ["mcq.acc"],
            "x": "eval.mcq.limit",  # asked for: an item selector is never the axis by itself
            "output": str(tmp_path / "cmp"),
            "overwrite": False,
            "paths": {"output_dir": str(tmp_path / "cmp")},
            "max_plot_metrics": 4,
        }
    )
    summary = compare(cfg)
    assert summary["axis"] == "eval.mcq.limit"
    # compared with the first named (20); the paired table names runs by their short labels
    assert [(r["run"], r["against"]) for r in summary["paired"]] == [("mcq.limit=8", "mcq.limit=20")]
