"""An interval the exact paired test leaves unbounded (5 items or fewer: eval/paired.py) prints as too few
items, with the figure kept, in the before/after table and the tokenizer table, not as `[-inf, +inf]`."""

from rich.console import Console

from chipadapt.eval.paired import paired_bootstrap
from chipadapt.report import before_after_table
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
