"""Files the tools write parse under strict JSON readers (jq, JSON.parse): no NaN or Infinity."""

import json
import math

import pytest

from chipadapt.eval.items import write_items
from chipadapt.io.atomic import write_json_atomic
from chipadapt.io.strict_json import finite_or_null
from chipadapt.tokenizer.report import starting_bpb_table


def strict_load(text: str):
    def refuse(word: str):
        raise ValueError(f"non-standard JSON constant {word}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_at_any_depth():
    obj = {"ci": (-math.inf, 0.5), "rows": [{"p": math.nan}], "n": 4, "ok": 1.25, "name": "inf"}
    assert finite_or_null(obj) == {"ci": [None, 0.5], "rows": [{"p": None}], "n": 4, "ok": 1.25, "name": "inf"}


def test_run_files_parse_strictly(tmp_path):
    """An exact interval over 4 items is unbounded; the manifest and the items file must still parse."""
    write_json_atomic(tmp_path / "manifest.json", {"metrics": {"ci_low": -math.inf, "ci_high": math.inf}})
    assert strict_load((tmp_path / "manifest.json").read_text()) == {"metrics": {"ci_low": None, "ci_high": None}}
    write_items(tmp_path, "mmlu", [{"id": "a", "score": math.nan}, {"id": "b", "score": 1.0}])
    lines = (tmp_path / "mmlu_items.jsonl").read_text().splitlines()
    assert [strict_load(line)["score"] for line in lines] == [None, 1.0]


def test_numpy_floats_are_numbers_not_strings(tmp_path):
    np = pytest.importorskip("numpy")
    write_json_atomic(tmp_path / "x.json", {"v": np.float32(0.5), "w": np.float64("inf"), "k": np.int64(3)})
    assert strict_load((tmp_path / "x.json").read_text()) == {"v": 0.5, "w": None, "k": 3}


def test_tokenizer_report_table_reads_unbounded_ends_back():
    row = {"domain_bpb": 1.0, "domain_minus_base": 0.2, "domain_minus_base_ci": [None, 0.5], "domain_blocks": 4}
    row |= {"general_bpb": 1.1, "general_minus_base": 0.1, "general_minus_base_ci": [None, None], "general_blocks": 4}
    starting = {"base_tokenizer": {"domain_bpb": 0.8}, "input": "mean", "outputs": {"mean": row}}
    report = {"init": {"output": "mean"}, "starting_bpb": starting}
    table = starting_bpb_table(report)
    cells = [str(cell) for column in table.columns for cell in column._cells]
    assert any("+0.2000 [-inf, +0.5000]" in cell for cell in cells)  # one end unbounded: null read back
    # Both ends unbounded (the exact test over 5 blocks or fewer): said in words, not `[-inf, +inf]`.
    assert any("+0.1000 (interval n/a: n=4, too few)" in cell for cell in cells)
