"""A training run's own figures over groups: an SFT run's validation conversations carry their OASST message
tree (the datamodule's val_groups), and 28 threads of 4 trees are about 4 independent draws, so each split's
interval and the run's before/after change resample or swap whole groups (modules/val_figures.py). DAPT's
documents (no groups) keep the figures and keys they had."""

import json

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from chipadapt.eval.paired import paired_bootstrap
from chipadapt.modules.val_figures import VAL_METRICS, paired_change, ratio_parts, split_figures


def _tables(n_groups: int, per_group: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Item tables [item, nll, tokens, bytes] before and after, where training moved each group's items
    together (a tree's threads share their first turns): a shift per group, little spread inside it."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    tokens = rng.integers(80, 120, n).astype(float)
    before = np.stack([np.arange(n), tokens * rng.uniform(2.0, 2.2, n), tokens, tokens * 4], axis=1)
    after = before.copy()
    after[:, 1] *= 1 + np.repeat(rng.normal(-0.03, 0.05, n_groups), per_group) + rng.normal(0, 0.002, n)
    return before, after, [f"tree{i // per_group}" for i in range(n)]


def test_a_split_interval_resamples_whole_groups_and_counts_the_items():
    before, _, groups = _tables(20, 5)
    items, grouped = split_figures(before), split_figures(before, groups)
    assert grouped["bpb"] == items["bpb"] and grouped["bpb_n"] == items["bpb_n"] == 100
    assert "20 groups of the 100 items" in grouped["bpb_ci_method"] and "over groups" in grouped["bpb_ci_method"]
    assert "groups" not in items["bpb_ci_method"]
    assert set(grouped) == set(items)  # no key compare.py would read as a metric of its own
    # items of a group are alike: resampling groups sees less spread per draw but fewer draws
    assert grouped["bpb_ci"] != items["bpb_ci"]


def test_the_change_over_few_groups_is_the_exact_test_over_groups():
    before, after, groups = _tables(4, 7)
    items = paired_change(before, after)
    change = paired_change(before, after[::-1], groups)  # matched by item, whatever the order
    for name in VAL_METRICS:
        assert change[name]["test"] == "paired-permutation-exact over groups"
        assert (change[name]["n"], change[name]["groups"]) == (28, 4)
        assert change[name]["difference"] == pytest.approx(items[name]["difference"])
        # 4 groups bound no interval at 95%: the 28 items' test, as if independent, claims one
        assert change[name]["ci"] == [-np.inf, np.inf] and change[name]["verdict"] == "within noise"
        assert items[name]["test"] == "paired-permutation-random" and np.isfinite(items[name]["ci"]).all()


def test_the_change_over_many_groups_is_the_random_sign_flip_test_and_wider():
    before, after, groups = _tables(20, 5)
    items, change = paired_change(before, after)["bpb"], paired_change(before, after, groups)["bpb"]
    assert change["test"] == "paired-permutation-random over groups" and (change["n"], change["groups"]) == (100, 20)
    assert change["ci"][1] - change["ci"][0] > 2 * (items["ci"][1] - items["ci"][0])


def test_groups_whose_sums_are_equal_keep_their_count_and_say_so():
    before, _, groups = _tables(4, 7)
    before[:, 1] = np.round(before[:, 1])  # whole nats: a group's sums add up exactly in any order
    after = before.copy()
    after[[0, 1], 1] += [1.0, -1.0]  # two items of one tree trade a nat: every group's sums are as before
    change = paired_change(before, after, groups)["loss"]
    assert change["groups"] == 4 and change["difference"] == 0
    assert not change["test"].endswith(" over groups")
    assert "every one of the 4 groups has equal sums in both runs" in change["note"]
    assert "the 28 items were tested instead as if independent" in change["note"]


def test_without_groups_the_figures_and_keys_are_as_before():
    before, after, _ = _tables(6, 5)
    change = paired_change(before, after)
    assert paired_change(before, after, None) == change == paired_change(before, after, [])
    (a_num, a_den, transform), (b_num, b_den, _) = ratio_parts(before)["ppl"], ratio_parts(after)["ppl"]
    d = paired_bootstrap(a_num, a_den, b_num, b_den, transform)
    assert change["ppl"] == {
        "before": d.a,
        "after": d.b,
        "difference": d.diff,
        "ci": list(d.ci),
        "p": d.p,
        "n": d.n,
        "test": d.test,
        "verdict": d.verdict,
    }
    # each item its own group, or items past the group list (no group recorded): over items as well
    assert paired_change(before, after, [f"c{i}" for i in range(30)]) == change
    assert split_figures(before, [f"c{i}" for i in range(30)]) == split_figures(before)
    assert paired_change(before, after, ["t0", "t0"])["bpb"]["groups"] == 29


class _Conversations(L.LightningDataModule):
    """Validation rows, one conversation each, of 2 message trees (the SFT datamodule's val_groups)."""

    val_groups = {"domain": ["tree0"] * 4 + ["tree1"] * 4}

    def val_dataloader(self):
        rng = np.random.default_rng(0)
        rows = []
        for i in range(8):
            ids = torch.tensor(rng.integers(3, 500, 12))
            rows.append(
                {"input_ids": ids, "attention_mask": torch.ones(12, dtype=torch.long), "labels": ids, "row_index": i}
            )
        return torch.utils.data.DataLoader(rows, batch_size=4)


def test_the_module_takes_the_datamodule_s_groups_for_its_intervals(tmp_path):
    from helpers.models import tiny_llama

    from chipadapt.modules.causal_lm import CausalLMModule

    module = CausalLMModule(
        tiny_llama(tmp_path), "float32", "sdpa", False, OmegaConf.create({}), val_split_names=["domain"]
    )
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=_Conversations(), verbose=False)
    figures = module.val_results["domain"]
    assert figures["bpb_n"] == 8 and "2 groups of the 8 items" in figures["bpb_ci_method"]
    assert figures["bpb_ci"] is None  # 2 groups: too few for an interval


def test_the_stage_s_change_and_its_printed_table_go_over_the_datamodule_s_groups():
    from chipadapt.report import before_after_table
    from chipadapt.stages.causal_lm import validation_change

    before, after, groups = _tables(4, 7)
    change = validation_change({"chat": before}, {"chat": after}, {"chat": groups})
    assert change["chat"]["bpb"]["groups"] == 4 and "over groups" in change["chat"]["bpb"]["test"]
    assert "groups" not in validation_change({"chat": before}, {"chat": after})["chat"]["bpb"]
    old, new = split_figures(before, groups), split_figures(after, groups)
    table = before_after_table({"chat": old}, {"chat": new}, change, "SFT")
    assert list(table.columns[1].cells) == ["28 (4 groups)"]
    # 4 groups are the draws, as compare.py says: not "unbounded" as if the 28 items were
    (cell,) = table.columns[4].cells
    assert cell.endswith(" (interval n/a: n=4 groups, too few)"), cell
    (cell,) = table.columns[7].cells  # ppl's change, in %
    assert cell.endswith("% (interval n/a: n=4 groups, too few)"), cell
    # each split's own figures over the 4 groups: no interval either, and the table says why
    for column in (2, 3):
        (cell,) = table.columns[column].cells
        assert cell.endswith(" (interval n/a: n=4 groups, too few)") and "[" not in cell, cell


def test_the_items_change_over_few_items_still_says_too_few_items():
    from chipadapt.report import paired_text

    change = {"difference": -0.1, "ci": [None, None], "n": 4}
    assert paired_text(change, 3) == "-0.1 (interval n/a: n=4, too few)"
    assert paired_text({**change, "n": 28, "groups": 4}, 3) == "-0.1 (interval n/a: n=4 groups, too few)"
    assert paired_text({**change, "n": 28}, 3) == "-0.1 (interval n/a: unbounded)"


@pytest.mark.parametrize("n_groups", [2, 3, 5])
def test_a_split_over_too_few_groups_has_no_interval_and_says_why(n_groups):
    from chipadapt.io import strict_json
    from chipadapt.report import FEWEST_FOR_AN_INTERVAL, with_interval
    from chipadapt.run_metrics import evaluation_uncertainty, run_results

    assert n_groups < FEWEST_FOR_AN_INTERVAL
    before, _, groups = _tables(n_groups, 7)
    figures, items = split_figures(before, groups), split_figures(before)
    assert set(figures) == set(items)
    for name in VAL_METRICS:
        assert figures[name] == items[name] and figures[f"{name}_n"] == 7 * n_groups
        assert figures[f"{name}_ci"] is None and figures[f"{name}_stderr"] is None
        method = figures[f"{name}_ci_method"]
        assert method.startswith(f"interval n/a: n={n_groups} groups, too few;"), method
        assert f"{n_groups} groups of the {7 * n_groups} items" in method
        assert with_interval(figures, name, 4) == f"{figures[name]:.4f} (interval n/a: n={n_groups} groups, too few)"
    # as manifest.json stores it, and as compare.py reads it back: no interval, the items counted, and why
    # (the `_ci_method`, which compare.py's cell prints the first clause of)
    manifest = json.loads(strict_json.dumps({"kind": "train", "metrics": {"after": {"chat": figures}}}))
    found = evaluation_uncertainty(run_results(manifest))["val/chat/bpb"]
    assert found == {"ci": None, "n": 7 * n_groups, "why": figures["bpb_ci_method"]}


def test_a_split_over_enough_groups_has_its_interval():
    from chipadapt.report import FEWEST_FOR_AN_INTERVAL

    before, _, groups = _tables(FEWEST_FOR_AN_INTERVAL, 7)
    figures = split_figures(before, groups)
    assert all(len(figures[f"{name}_ci"]) == 2 for name in VAL_METRICS)
    assert (
        f"{FEWEST_FOR_AN_INTERVAL} groups of the" in figures["bpb_ci_method"]
        and "over groups" in figures["bpb_ci_method"]
    )
