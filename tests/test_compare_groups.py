"""compare.py's paired test swaps whole groups where the items carry one: an SFT run's validation
items record the OASST message tree each held-out thread came from (stages/validation_items.py), and 28
threads of 4 trees are 4 independent draws, not 28. Items without groups, or each its own group, are
compared as before; two runs that put one item in other groups are not paired by group."""

import json
from pathlib import Path

import numpy as np
import pytest

from chipadapt.eval.paired import GroupsDiffer, paired_difference
from chipadapt.eval.paired_compare import COLUMNS, markdown, paired_rows
from chipadapt.modules.val_figures import split_values
from chipadapt.stages.validation_items import write_validation_items


def _items(values, groups=None) -> dict[str, dict]:
    """{id: item} with a ratio score `bpb` per item, each in `groups[i]` where given."""
    return {
        f"t/{i}": {
            "id": f"t/{i}",
            "scores": {"bpb": {"num": float(v), "den": 10.0}},
            **({"group": groups[i]} if groups is not None else {}),
        }
        for i, v in enumerate(values)
    }


def _clustered(n_groups: int, per_group: int, seed: int = 0) -> tuple[list, list, list[str]]:
    """Two runs' item sums where the second is lower on most groups, the items of a group alike (a
    group's shift shared by its items): their independent units are the groups."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(-0.4, 1.0, n_groups)
    a = rng.normal(12.0, 1.0, n_groups * per_group)
    b = a + np.repeat(shift, per_group) + rng.normal(0, 0.05, len(a))
    return a.tolist(), b.tolist(), [f"tree{g}" for g in range(n_groups) for _ in range(per_group)]


def test_few_groups_are_permuted_whole():
    a, b, groups = _clustered(4, 7)
    items = paired_difference(_items(a), _items(b), "bpb")
    assert items.test == "paired-permutation-random" and items.groups is None
    d = paired_difference(_items(a, groups), _items(b, groups), "bpb")
    assert d.test == "paired-permutation-exact over groups" and (d.n, d.groups) == (28, 4)
    assert d.diff == pytest.approx(items.diff)  # the same figure: only how sure it is changes
    # 2**4 swaps of whole groups: p cannot go below 2 / 16, and 4 groups bound no interval at 95%
    assert d.p >= 0.125 and d.ci == (-np.inf, np.inf) and d.verdict == "within noise"


def test_many_groups_are_swapped_whole_at_random():
    a, b, groups = _clustered(20, 5)
    items = paired_difference(_items(a), _items(b), "bpb")
    d = paired_difference(_items(a, groups), _items(b, groups), "bpb")
    assert d.test == "paired-permutation-random over groups" and (d.n, d.groups) == (100, 20)
    assert d.diff == pytest.approx(items.diff)
    # items that move with their group: the interval over groups is the wider (about sqrt(5) here)
    assert d.ci[1] - d.ci[0] > 1.5 * (items.ci[1] - items.ci[0])


def test_items_each_their_own_group_compare_as_before():
    a, b, _ = _clustered(6, 4)
    ids = [f"c{i}" for i in range(len(a))]  # SFT without group_by: each thread's group is its own id
    assert paired_difference(_items(a, ids), _items(b, ids), "bpb") == paired_difference(_items(a), _items(b), "bpb")


def test_a_group_one_run_does_not_record_is_the_other_runs():
    a, b, groups = _clustered(4, 7)
    d = paired_difference(_items(a), _items(b, groups), "bpb")  # the first run from before the record
    assert d.test == "paired-permutation-exact over groups" and d.groups == 4


def test_pass_fail_items_of_groups_are_compared_as_proportions_over_groups():
    groups = [f"g{i // 3}" for i in range(60)]
    a = {f"q{i}": {"scores": {"acc": i % 2 == 0}, "group": groups[i]} for i in range(60)}
    b = {f"q{i}": {"scores": {"acc": i % 3 != 2}, "group": groups[i]} for i in range(60)}
    d = paired_difference(a, b, "acc")
    assert d.test == "paired-permutation-random over groups" and (d.n, d.groups) == (60, 20)
    assert (d.a, d.b) == pytest.approx((0.5, 40 / 60)) and d.diff == pytest.approx(40 / 60 - 0.5)


def test_groups_whose_sums_are_all_equal_are_counted_and_said():
    a, _, groups = _clustered(4, 7)
    a = [round(x) for x in a]  # whole numbers: a group's sums add up exactly in any order
    b = [a[1], a[0], *a[2:]]  # two items of the first group trade scores: every group's sums are as before
    d = paired_difference(_items(a, groups), _items(b, groups), "bpb")
    assert d.diff == 0 and (d.n, d.groups) == (28, 4) and not d.test.endswith(" over groups")
    assert d.note.startswith("every one of the 4 groups has equal sums in both runs, so the difference is 0")
    row = {"run": "b", "against": "a", "metric": "bpb", "n": d.n, "groups": d.groups, "first": d.a, "this": d.b}
    row |= {"difference": d.diff, "ci95_lo": d.ci[0], "ci95_hi": d.ci[1], "p": d.p, "test": d.test}
    row |= {"verdict": d.verdict, "note": d.note, "left_out": 0, "reason": ""}
    text = markdown([row])
    assert "| 28 (4 groups) |" in text and "within noise [1]" in text and "[1] bpb of b: every one of the 4" in text


def test_a_row_without_groups_reads_as_items_whether_blank_or_none():
    row = {"run": "b", "against": "a", "metric": "bpb", "n": 4, "first": 1.0, "this": 1.1, "difference": 0.1}
    row |= {
        "ci95_lo": -np.inf,
        "ci95_hi": np.inf,
        "p": 0.5,
        "test": "paired-permutation-exact",
        "verdict": "within noise",
    }
    row |= {"note": "", "left_out": 0, "reason": ""}
    for groups in ("", None):
        text = markdown([{**row, "groups": groups}])
        assert "| 4 |" in text and "(interval n/a: n=4, too few)" in text and "groups" not in text.split("\n")[2]


def test_other_groups_for_one_item_are_refused():
    a, b, groups = _clustered(4, 7)
    other = [*groups[:-1], "tree9"]
    with pytest.raises(GroupsDiffer, match=r"'t/27' is of group 'tree3' in the first run, 'tree9' in the second"):
        paired_difference(_items(a, groups), _items(b, other), "bpb")


def _sft_run(path: Path, nll: list[float], groups: list[str]) -> Path:
    """A finished training run's folder whose validation items carry their conversation's group."""
    path.mkdir(parents=True)
    t = np.array([[i, n, 40 + i, 150 + 3 * i] for i, n in enumerate(nll)], dtype=np.float64)
    manifest = {
        "kind": "train",
        "status": "completed",
        "overrides": [],
        "config": {"data": {"seq_len": 64}, "trainer": {}, "stage": {"name": "sft"}},
        "metrics": {"after": {"domain": split_values(t)}, "global_step": 3},
        "results": {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    write_validation_items(path, {"domain": t}, groups={"domain": groups})
    return path


def test_compare_says_the_groups_and_refuses_runs_that_group_items_otherwise(tmp_path):
    a, b, groups = _clustered(4, 7)
    first = _sft_run(tmp_path / "a", [x * 40 for x in a], groups)
    second = _sft_run(tmp_path / "b", [x * 40 for x in b], groups)
    rows = {r["metric"]: r for r in paired_rows([("a", first), ("b", second)])}
    bpb = rows["val/domain/bpb"]
    assert (bpb["n"], bpb["groups"], bpb["test"]) == (28, 4, "paired-permutation-exact over groups")
    assert "groups" in COLUMNS and "| 28 (4 groups) |" in markdown([bpb])
    assert "(interval n/a: n=4 groups, too few)" in markdown([bpb])  # the groups are what is too few

    regrouped = _sft_run(tmp_path / "c", [x * 40 for x in b], [f"c{i}" for i in range(28)])
    rows = {r["metric"]: r for r in paired_rows([("a", first), ("c", regrouped)])}
    assert rows["val/domain/bpb"]["verdict"] == "not paired"
    assert "'domain/0' is of group 'tree0' in the first run, 'c0' in the second" in rows["val/domain/bpb"]["reason"]


def test_a_search_s_note_on_an_exact_test_counts_groups_not_items():
    from chipadapt.optuna_results import exact_floor_note

    grouped = {"test": "paired-permutation-exact over groups", "n": 28, "groups": 4}
    assert exact_floor_note(grouped) == "n=4 groups: an exact test cannot go below p=0.125"
    assert exact_floor_note({"test": "paired-permutation-exact", "n": 4, "groups": ""}).startswith("n=4 items")
    assert exact_floor_note({"test": "paired-permutation-exact", "n": 28, "groups": ""}) is None
