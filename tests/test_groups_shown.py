"""What the tables say about items drawn by whole groups: compare.py's cell of a training run's split over
too few groups says why it has no interval (it read `5.22 n=28`), and the training run's before/after
table counts the groups of a split validated only after training (it read `28`)."""

import json

import numpy as np

from chipadapt.eval.compare import cell
from chipadapt.eval.compare_runs import load_run
from chipadapt.modules.val_figures import paired_change, split_figures
from chipadapt.report import before_after_table


def _split(n_groups: int, per_group: int = 7) -> tuple[np.ndarray, list[str]]:
    """An item table [item, nll, tokens, bytes] of n_groups groups, and each item's group."""
    rng = np.random.default_rng(0)
    n = n_groups * per_group
    tokens = rng.integers(80, 120, n).astype(float)
    table = np.stack([np.arange(n), tokens * rng.uniform(2.0, 2.2, n), tokens, tokens * 4], axis=1)
    return table, [f"tree{i // per_group}" for i in range(n)]


def _train_folder(path, figures: dict):
    path.mkdir()
    manifest = {"kind": "train", "status": "completed", "overrides": [], "metrics": {"after": {"chat": figures}}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return load_run(path)


def test_compare_says_why_a_split_over_too_few_groups_has_no_interval(tmp_path):
    table, groups = _split(4)
    run = _train_folder(tmp_path / "few", split_figures(table, groups))
    text = cell(run, "val/chat/bpb")
    assert text == f"{run.metrics['val/chat/bpb']:.4g} (interval n/a: n=4 groups, too few) n=28", text
    # enough groups: the interval, and nothing about too few
    table, groups = _split(8)
    text = cell(_train_folder(tmp_path / "enough", split_figures(table, groups)), "val/chat/bpb")
    assert "[" in text and "n/a" not in text and text.endswith(" n=56"), text


def test_a_split_validated_only_after_training_counts_its_groups():
    table, groups = _split(4)
    after = {"chat": split_figures(table, groups)}
    assert list(before_after_table({}, after, {}, "SFT").columns[1].cells) == ["28 (4 groups)"]
    table, groups = _split(8)
    after = {"chat": split_figures(table, groups)}
    assert list(before_after_table({}, after, {}, "SFT").columns[1].cells) == ["56 (8 groups)"]
    # items without groups (DAPT's documents): the items alone
    assert list(before_after_table({}, {"chat": split_figures(table)}, {}, "SFT").columns[1].cells) == ["56"]


def test_compare_reads_why_from_the_run_as_loaded(tmp_path):
    table, groups = _split(4)
    run = _train_folder(tmp_path / "few", split_figures(table, groups))
    assert run.uncertainty["val/chat/bpb"]["why"].startswith("interval n/a: n=4 groups, too few;")
    (tmp_path / "few" / "manifest.json").unlink()  # the cell needs no second read of the manifest
    assert cell(run, "val/chat/bpb").endswith(" (interval n/a: n=4 groups, too few) n=28")


def test_a_change_over_items_counts_no_groups_though_the_split_after_has_them():
    # validated before on 6 items, one per tree (each its own group: the change is over items), after on
    # all 56 items of 8 trees: n is the change's 6 items, not 6 "of 8 groups"
    after, groups = _split(8)
    before = after[:42:7].copy()
    before[:, 1] *= 1.01  # the starting model's loss, a little higher
    change = {"chat": paired_change(before, after, groups)}
    assert "groups" not in change["chat"]["bpb"] and change["chat"]["bpb"]["n"] == 6
    old, new = {"chat": split_figures(before, groups)}, {"chat": split_figures(after, groups)}
    assert list(before_after_table(old, new, change, "SFT").columns[1].cells) == ["6"]
