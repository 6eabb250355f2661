"""An interval the exact paired test leaves unbounded (5 items or fewer: eval/paired.py) prints as too few
items, with the figure kept, in the before/after table, the tokenizer table, compare.py's tables and the
reproduction report, not as `[-inf, +inf]`; an end stored as null (a diverged model's perplexity in
results.json) does not crash a table."""

import math
from pathlib import Path

from rich.console import Console

from chipadapt.eval.compare import cell
from chipadapt.eval.compare_runs import Run
from chipadapt.eval.paired import PairedDifference, paired_bootstrap
from chipadapt.report import before_after_table
from chipadapt.reproduce.report import merge_verdicts, pairs
from chipadapt.reproduce.report.dapt_sweep import value_ci_text
from chipadapt.tokenizer.held_out import _row
from chipadapt.tokenizer.report import saving_text


def _change(a_num, a_den, b_num, b_den) -> dict:
    paired = paired_bootstrap(a_num, a_den, b_num, b_den)
    return {
        "before": paired.a,
        "after": paired.b,
        "difference": paired.diff,
        "ci": [None if abs(end) == float("inf") else end for end in paired.ci],  # as the manifest holds it
        "p": paired.p,
        "n": paired.n,
        "test": paired.test,
        "verdict": paired.verdict,
    }


def _shown(table) -> str:
    wide = Console(width=400)  # no cell wrapped onto a second line
    with wide.capture() as shown:
        wide.print(table)
    return shown.get()


def test_four_documents_print_too_few_not_infinite_ends():
    dens = [1000.0, 1200.0, 900.0, 1100.0]
    before_bits, after_bits = [1800.0, 2100.0, 1650.0, 2000.0], [1790.0, 2095.0, 1649.0, 1990.0]
    bpb = _change(before_bits, dens, after_bits, dens)
    assert bpb["ci"] == [None, None] and bpb["n"] == 4  # unbounded: the test cannot reject over 4 items
    change = {"general": {"bpb": bpb}}
    before = {"general": {"bpb": 1.8, "ppl": 9.0}}
    after = {"general": {"bpb": 1.79, "ppl": 8.9}}
    text = _shown(before_after_table(before, after, change, "dapt"))
    assert "inf" not in text
    assert f"{bpb['difference']:+.3g} (interval n/a: n=4, too few)" in text


def test_six_documents_keep_their_interval():
    dens = [1000.0, 1200.0, 900.0, 1100.0, 1000.0, 950.0]
    bpb = _change([1800.0, 2100.0, 1650.0, 2000.0, 1700.0, 1500.0], dens, [1790, 2095, 1649, 1990, 1690, 1499], dens)
    text = _shown(
        before_after_table({"d": {"bpb": 1.8, "ppl": 9.0}}, {"d": {"bpb": 1.7, "ppl": 8.0}}, {"d": {"bpb": bpb}}, "x")
    )
    assert "n/a" not in text and f"{bpb['ci'][0]:+.3g}" in text


def test_the_tokenizer_saving_over_four_documents():
    row = _row([400, 520, 380, 610], [250, 330, 240, 380], chars=6000)
    assert row["reduction_ci_pct"] == [-float("inf"), float("inf")]  # in the process; null once written
    written = row | {"reduction_ci_pct": [None, None]}
    for text in (saving_text(row), saving_text(written)):
        assert text == f"{row['reduction_pct']:.2f}% (interval n/a: n=4, too few)"


def difference(n: int, ci: tuple[float, float]) -> PairedDifference:
    return PairedDifference(a=1.9, b=1.8, diff=-0.1, ci=ci, p=0.125, n=n, test="exact sign-flip")


def test_a_paired_difference_over_four_items_reads_too_few_in_the_report():
    d = difference(4, (-math.inf, math.inf))
    for text in (pairs.diff_text(d, "documents"), pairs.pct_text(d), merge_verdicts.diff_text(d, "domain bpb")):
        assert "(interval n/a: n=4, too few)" in text
        assert "inf" not in text


def test_a_bounded_paired_difference_keeps_its_ends():
    d = difference(40, (-0.2, 0.05))
    assert pairs.diff_text(d, "documents").startswith("-0.100 [-0.200, +0.050] over 40 documents")


def run_with(ci: list, n: int) -> Run:
    return Run(Path("r"), "evaluate", None, {}, {"ppl.ppl": 7.5}, uncertainty={"ppl.ppl": {"ci": ci, "n": n}})


def test_compare_cells_take_null_ends_from_results_json():
    assert cell(run_with([None, None], 3), "ppl.ppl") == "7.5 (interval n/a: n=3, too few) n=3"
    assert cell(run_with([6.0, None], 12), "ppl.ppl") == "7.5 [6, +inf] n=12"
    assert cell(run_with([6.0, 9.25], 12), "ppl.ppl") == "7.5 [6, 9.25] n=12"


def test_the_sweep_table_takes_a_null_end():
    assert value_ci_text((1.5, (1.2, None))) == "1.500 [1.200, +inf]"
