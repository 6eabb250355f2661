"""Training's validation figures carry their uncertainty, as evaluate.py's do: each split's ppl, loss and
bpb with a 95% bootstrap interval over the held-out documents and their count (manifest
`metrics.before/after`, compare.py's `_ci95_lo/_ci95_hi/_n`), and the before/after change as a paired
test on the same documents. The items are counted once when DDP's sampler repeats a sequence."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_FAST, compose, read_manifest

from chipadapt.data.packing import PackedSequences, collate_causal_lm
from chipadapt.data.token_cache import TokenizedSource

SEP = 0


def make_source(lengths: list[int]) -> TokenizedSource:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.arange(1, 1 + offsets[-1], dtype=np.uint32)
    return TokenizedSource(tokens, offsets, [f"d{i}" for i in range(len(lengths))], "k", True, 0.0)


def test_each_token_of_a_packed_validation_row_names_its_document():
    # Documents of 5, 1, 12 and 3 tokens (the last cut to 2): each followed by its separator but the cut one.
    order = np.array([[0, 0], [0, 1], [0, 2], [0, 3]])
    packed = PackedSequences(
        [make_source([5, 1, 12, 3])], order, 7, SEP, keep_tail=True, last_tokens=2, with_items=True
    )
    expected = [0] * 6 + [1] * 2 + [2] * 13 + [3] * 2
    rows = [packed[i] for i in range(len(packed))]
    assert [r["row_index"].item() for r in rows] == list(range(len(packed)))
    assert [t for r in rows for t in r["item_index"].tolist()] == expected
    batch = collate_causal_lm(rows[-2:], pad_id=SEP)  # the short tail is padded: item -1, no label
    assert batch["item_index"][1].tolist() == [3, 3] + [-1] * 5 and batch["row_index"].tolist() == [2, 3]
    assert (batch["labels"][batch["item_index"] < 0] == -100).all()


def records_of(rows: list[int], items: list[list[int]], nll: list[list[float]]) -> torch.Tensor:
    from chipadapt.modules.val_items import batch_records

    item_index = torch.tensor(items)
    labels = torch.where(item_index >= 0, torch.ones_like(item_index), torch.full_like(item_index, -100))[:, 1:]
    batch = {"row_index": torch.tensor(rows), "item_index": item_index}
    token_bytes = torch.tensor([1, 3])  # token 1 is 3 bytes
    return batch_records(batch, torch.tensor(nll)[:, 1:], labels, token_bytes, torch.float64)


def test_per_item_sums_count_a_sequence_repeated_by_the_ddp_sampler_once():
    from chipadapt.modules.val_items import item_table

    items = [[0, 0, 1, 1], [1, 1, 2, -1]]
    nll = [[9.0, 1.0, 2.0, 3.0], [9.0, 4.0, 5.0, 9.0]]
    once = records_of([0, 1], items, nll)
    # [item, nll, tokens, bytes]: a position's loss belongs to the token it predicts
    expected = [[0, 1.0, 1, 3], [1, 2.0 + 3.0 + 4.0, 3, 9], [2, 5.0, 1, 3]]
    assert item_table(once.numpy()).tolist() == expected
    # Two processes, the second scoring sequence 0 again (DistributedSampler's padding): the same table.
    rank0, rank1 = records_of([0], items[:1], nll[:1]), records_of([1, 0], items[::-1], nll[::-1])
    assert item_table(torch.cat([rank0, rank1]).numpy()).tolist() == expected


def test_split_figures_carry_interval_and_count_and_nan_stays_nan():
    from chipadapt.modules.val_figures import split_figures

    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 200, size=30).astype(float)
    table = np.stack([np.arange(30), tokens * rng.uniform(2.0, 3.0, 30), tokens, tokens * 3.5], axis=1)
    figures = split_figures(table)
    for name in ("ppl", "loss", "bpb"):
        low, high = figures[f"{name}_ci"]
        assert low < figures[name] < high and figures[f"{name}_n"] == 30
    assert figures["bpb"] == pytest.approx(table[:, 1].sum() / table[:, 3].sum() / math.log(2), rel=1e-12)
    table[3, 1] = math.nan  # a diverged model: the figure is NaN, not a number computed without it
    spoilt = split_figures(table)
    assert math.isnan(spoilt["loss"]) and math.isnan(spoilt["bpb"]) and spoilt["bpb_ci"] is None


def test_the_change_is_paired_on_the_same_documents():
    from chipadapt.modules.val_figures import paired_change

    rng = np.random.default_rng(1)
    tokens = rng.integers(50, 200, size=40).astype(float)
    # Documents differ a lot in difficulty; training lowered every one's loss by 1%.
    before = np.stack([np.arange(40), tokens * rng.uniform(1.0, 4.0, 40), tokens, tokens * 4], axis=1)
    after = before.copy()
    after[:, 1] *= 0.99
    change = paired_change(before, after[::-1])  # matched by document, whatever the order
    assert change["bpb"]["n"] == 40 and change["bpb"]["test"] == "paired-permutation-random"
    assert change["bpb"]["ci"][1] < 0 and change["bpb"]["verdict"] == "lower"
    assert change["bpb"]["difference"] == pytest.approx(-0.01 * change["bpb"]["before"])


def test_the_starting_validation_keeps_its_items_across_a_resume():
    from omegaconf import OmegaConf

    from chipadapt.stages.common import StartingMetrics, validation_settings

    cfg = OmegaConf.create({"data": {"val_fraction": 0.1, "val_max_bytes": 8192}, "trainer": {}})
    first = StartingMetrics(validation_settings(cfg))
    first.values, first.items = {"domain": {"loss": 2.0}}, {"domain": np.array([[0, 2.0, 1, 4], [1, 3.0, 2, 5]])}
    state = torch.load(_saved(first.state_dict()), weights_only=True)  # plain values: a weights-only load reads them
    resumed = StartingMetrics(validation_settings(cfg))
    resumed.load_state_dict(state)
    assert resumed.items["domain"].tolist() == [[0, 2.0, 1, 4], [1, 3.0, 2, 5]]


def _saved(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_training_reports_intervals_counts_and_a_paired_change(tmp_path):
    from chipadapt.eval.compare_runs import load_run
    from chipadapt.eval.items import VALIDATION_TASK, estimate, items_file, read_items
    from chipadapt.pipeline import train
    from chipadapt.report import before_after_table, console

    run = tmp_path / "run"
    train(compose([*TINY_FAST, "trainer.max_steps=2", "data.val_max_bytes=12000"], run))
    manifest = read_manifest(run)
    metrics, held_out = manifest["metrics"], manifest["data"]["val_text"]
    for when in ("before", "after"):
        for split, figures in metrics[when].items():
            # one item per held-out document the split read
            assert figures["bpb_n"] == figures["ppl_n"] == held_out[split]["documents"]
            if figures["bpb_n"] < 6:  # too few documents for an interval (eval/intervals.py): said, not a number
                assert figures["bpb_ci"] is None
                assert figures["ppl_ci_method"].startswith("interval n/a: n=")
            else:
                low, high = figures["bpb_ci"]
                assert low <= figures["bpb"] <= high and low < high
                assert figures["ppl_ci_method"].startswith("sign-flip test inverted (ratio of sums")
    change = metrics["change"]["domain"]["bpb"]
    assert change["n"] == held_out["domain"]["documents"]
    assert change["difference"] == pytest.approx(metrics["after"]["domain"]["bpb"] - metrics["before"]["domain"]["bpb"])
    # compare.py reads them as it reads an evaluation's
    found = load_run(run).uncertainty["val/domain/bpb"]
    ci = metrics["after"]["domain"]["bpb_ci"]
    why = {} if ci else {"why": metrics["after"]["domain"]["bpb_ci_method"]}  # no interval: the reason travels
    assert found == {"ci": ci, "n": held_out["domain"]["documents"], **why}
    # the final validation per document, for compare.py to pair two training runs on
    items = read_items(items_file(run, VALIDATION_TASK))
    for split, figures in metrics["after"].items():
        mine = [item for item in items.values() if item["split"] == split]
        assert len(mine) == held_out[split]["documents"]
        # every byte scored, said as evaluate.py's perplexity says it (tests/test_validation_all_bytes.py)
        assert held_out[split]["first_token"] == "scored" and all(i["first_token"] == "scored" for i in mine)
        assert estimate([i["scores"][f"val/{split}/bpb"] for i in mine]).value == pytest.approx(figures["bpb"])
    with console.capture() as shown:
        console.print(before_after_table(metrics["before"], metrics["after"], metrics["change"], "dapt"))
    ci = metrics["after"]["domain"]["bpb_ci"]
    if ci is None:  # under 6 documents: the table says why, as for a paired change over so few
        assert f"(interval n/a: n={held_out['domain']['documents']}, too few)" in shown.get()
    else:
        assert f"[{ci[0]:.4f}, {ci[1]:.4f}]" in shown.get()


@pytest.mark.integration
def test_two_processes_validate_each_document_once(tmp_path, tiny_overrides):
    """43 general sequences on 2 processes: DistributedSampler repeats one, which was counted twice."""
    from conftest import run_train
    from helpers.ddp_runs import TWO_CPU_PROCESSES

    from chipadapt.pipeline import train

    common = [
        *tiny_overrides,
        "data.micro_batch_size=2",
        "trainer.max_steps=1",
        "callbacks.checkpoint=null",
        "loss_guard.enabled=false",
    ]
    # The one-process reference in this process (a train.py start fewer); the two processes as train.py runs them.
    train(compose(common, tmp_path / "one"))
    ddp = run_train([*common, *TWO_CPU_PROCESSES, f"hydra.run.dir={tmp_path / 'two'}"], timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = (read_manifest(tmp_path / name)["metrics"] for name in ("one", "two"))
    for when in ("before", "after"):
        for split in one[when]:
            for key in ("bpb", "loss", "bpb_n"):
                assert two[when][split][key] == pytest.approx(one[when][split][key], rel=1e-6), (when, split, key)


def test_compare_reads_the_intervals_of_what_a_training_stage_measured_besides_validation(tmp_path):
    """The retriever stage's retrieval figures carry _ci and _n in its manifest; compare.py showed them bare."""
    from chipadapt.eval.compare_runs import load_run

    figures = {"hit@8": 0.5, "hit@8_ci": [0.19, 0.81], "hit@8_n": 10, "hit@8_stderr": 0.16}
    manifest = {
        "kind": "train",
        "status": "completed",
        "overrides": ["stage=retriever"],
        "metrics": {"global_step": 4, "val": {"val/loss": 0.1}, "retrieval": {"eval_queries": {"finetuned": figures}}},
        # a stage's own record of its output (annotate, bootstrap) hid the measured figures' intervals
        "results": {"output": {"path": "annotated.jsonl", "fingerprint": "ab12"}},
    }
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_run(run)
    assert loaded.metrics["retrieval.eval_queries.finetuned.hit@8"] == 0.5
    assert loaded.uncertainty["retrieval.eval_queries.finetuned.hit@8"] == {"ci": [0.19, 0.81], "n": 10}
