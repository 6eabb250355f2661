"""Readers of intervals with one or both ends unbounded or none at all: results.json keeps a finite end, plots
draw no bar on a null side, tables print why an interval is missing, a point interval of equal differences
is marked, and a metric scored in other forms is a "not measured" row of the report, not its end."""

import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from chipadapt.eval.intervals import Estimate
from chipadapt.eval.items import metric_fields

NO_SPREAD = "interval n/a: every item at the same value, 0.5; no spread to size an interval on"


def test_one_infinite_end_keeps_the_finite_one_and_two_give_none():
    half = Estimate(math.inf, None, (6.7e293, math.inf), 20, "sign-flip test inverted (mean, every sign flip)")
    assert metric_fields("ppl", half)["ppl_ci"] == [6.7e293, math.inf]  # was None: the finite end was lost
    none = Estimate(1.0, 0.1, (-math.inf, math.inf), 4, "interval n/a: n=4, too few; ...")
    assert metric_fields("ppl", none)["ppl_ci"] is None


def _run(folder, ci, n=10):
    folder.mkdir()
    results = {"perplexity": {"ppl": 5.0, "ppl_ci": ci, "ppl_n": n, "ppl_ci_method": "sign-flip test inverted"}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


@pytest.mark.parametrize("ci", [[4.0, None], [None, None]])
def test_compare_plots_runs_whose_interval_has_a_null_end(tmp_path, ci):
    from chipadapt.eval.compare import compare

    runs = [_run(tmp_path / "a", [4.5, 5.5]), _run(tmp_path / "b", ci)]
    cfg = OmegaConf.create(
        {
            "runs": [str(r) for r in runs],
            "labels": ["a", "b"],
            "metrics": None,
            "x": None,
            "output": str(tmp_path / "cmp"),
            "overwrite": False,
            "paths": {"output_dir": str(tmp_path / "cmp")},
            "max_plot_metrics": 4,
        }
    )
    compare(cfg)  # ended in a TypeError (`value - None`) in compare_plots.error_bars
    assert (tmp_path / "cmp" / "compare_bars.png").is_file()


def test_error_bars_have_no_bar_on_a_null_side():
    from chipadapt.eval.compare_plots import error_bars
    from chipadapt.eval.compare_runs import Run

    def run(ci):
        return Run(None, "evaluate", "completed", {}, {"m": 5.0}, uncertainty={"m": {"ci": ci, "n": 10}})

    below, above = error_bars([run([4.0, 5.5]), run([4.0, None]), run([None, None]), run(None)], "m")
    assert below[:2] == [1.0, 1.0] and above[0] == 0.5
    assert all(math.isnan(x) for x in [above[1], below[2], above[2], below[3], above[3]])


def test_the_merge_plot_has_no_bar_on_a_null_side(tmp_path):
    from chipadapt.reproduce.report.merge_plots import errors
    from chipadapt.reproduce.report.merge_runs import INSTRUCT, Run

    results = {"ifeval": {"instruction_loose": 0.4, "instruction_loose_ci": [0.3, None]}}
    value, bars = errors(Run("m", "linear", None, tmp_path, results), INSTRUCT)
    assert value == 0.4 and bars[0][0] == pytest.approx(0.1) and math.isnan(bars[1][0])


def test_tables_print_why_there_is_no_interval():
    from chipadapt.eval.run import interval_cell, interval_methods
    from chipadapt.reproduce.report.dapt_sweep import value_ci_text, with_ci
    from chipadapt.reproduce.report.merge_runs import Run
    from chipadapt.reproduce.report.merge_section import with_ci as merge_cell
    from chipadapt.stages.attribute_model import _cell

    task = {"rougeL": 0.5, "rougeL_ci": None, "rougeL_n": 8, "rougeL_ci_method": NO_SPREAD}
    methods = interval_methods({"bm25": task})
    assert interval_cell("", "", 8, methods["bm25.rougeL"]) == "(interval n/a: every item at the same value, 0.5)"
    assert interval_cell(6.7e293, math.inf, 20, "sign-flip") == "[6.7000e+293, +inf]"
    assert interval_cell("", "", "", None) == ""  # a count: no interval to speak of

    results = {"eda": task}
    assert value_ci_text(with_ci(results, "eda.rougeL")) == "0.500 (interval n/a: every item at the same value, 0.5)"
    assert value_ci_text((1.5, (1.2, None))) == "1.500 [1.200, +inf]"
    run = Run("m", "linear", None, None, {"eda_script": {"call_f1": 0.5, "call_f1_ci": None, **_method(NO_SPREAD)}})
    assert merge_cell(run, "eda_script.call_f1") == "0.500 (interval n/a: every item at the same value, 0.5)"

    too_few = "interval n/a: n=4 groups of the 20 items, too few; a sign-flip test ..."
    figures = {"mae": 0.25, "mae_ci": None, "mae_ci_method": too_few}
    assert _cell(figures, "mae") == "0.250 (interval n/a: n=4 groups of the 20 items, too few)"


def _method(method):
    return {"call_f1_ci_method": method}


def test_equal_differences_give_a_point_interval_that_says_so():
    from chipadapt.eval.paired import paired_bootstrap

    for n in (8, 20):
        a, one = np.linspace(0.1, 0.5, n), np.ones(n)
        d = paired_bootstrap(a, one, a + 0.01, one)
        assert d.ci == pytest.approx((0.01, 0.01)) and d.verdict == "higher"  # the exact test rejects 0
        assert f"every one of the {n} items differs by +0.01" in d.note
        spread = paired_bootstrap(a, one, a + np.linspace(0, 0.02, n), one)
        assert spread.ci[1] > spread.ci[0] and spread.note == ""


def test_groups_all_at_one_rate_get_no_interval():
    from chipadapt.eval.paired_groups import ratio_over_groups

    est = ratio_over_groups(np.zeros(8), np.arange(1.0, 9.0))  # an attribute model's errors all 0
    assert est.ci == (-math.inf, math.inf) and est.method.startswith("interval n/a: every group at the same value, 0")
    assert ratio_over_groups(np.arange(1.0, 9.0) * 0.5, np.arange(1.0, 9.0)).ci == (-math.inf, math.inf)


def test_a_metric_scored_in_other_forms_is_a_not_paired_row(tmp_path):
    from chipadapt.reproduce.report.merge_tests import compare
    from chipadapt.reproduce.report.pairs import NotPaired

    ids = [f"d{i}" for i in range(8)]
    a = {i: {"id": i, "scores": {"bpb": {"num": 1.0 + k, "den": 2.0}}} for k, i in enumerate(ids)}
    b = {i: {"id": i, "scores": {"bpb": 0.5 + k}} for k, i in enumerate(ids)}
    found = compare((a, b), "corpus_ppl.bpb", frozenset())  # raised ScoresDiffer: the whole report stopped
    assert isinstance(found, NotPaired) and "other forms" in found.reason
