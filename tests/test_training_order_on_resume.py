"""A checkpoint records a hash of its training order; a resume on another order (copies of held-out texts
dropped since, a fraction drawn otherwise, another corpus) is told in one line naming the step, and recorded
for the manifest. A resume on the same order, or from a checkpoint without the hash, says nothing."""

import logging
from types import SimpleNamespace

import numpy as np

from chipadapt.data.blend import blend_order, order_digest
from chipadapt.data.token_cache import TokenizedSource
from chipadapt.stages.checkpoint_records import ORDER_CHANGES_KEY, ORDER_KEY, RecordSettings


def _source(lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = [f"d{i}" for i in range(len(lengths))]
    tokens = np.zeros(int(offsets[-1]), dtype=np.uint32)
    return TokenizedSource(tokens=tokens, offsets=offsets, doc_ids=ids, key="k", built=False, seconds=0.0)


def _trainer(order_hash):
    return SimpleNamespace(
        accumulate_grad_batches=1,
        is_global_zero=True,
        datamodule=SimpleNamespace(stats={"training_order": {"hash": order_hash}}),
    )


def _resume(trainer, checkpoint):
    RecordSettings({}).on_load_checkpoint(trainer, None, checkpoint)
    return trainer.datamodule.stats["training_order"]


def test_another_order_is_told_with_its_step_and_recorded(caplog):
    tok = _source([5, 7, 3, 9])
    # The documents trained on before and after copies of held-out texts were left out: two orders.
    before, _ = blend_order([("rtl", tok, np.arange(4), 1.0)], seed=0)
    after, _ = blend_order([("rtl", tok, np.arange(3), 1.0)], seed=0)
    assert order_digest([before]) != order_digest([after])
    checkpoint = {"global_step": 12, ORDER_KEY: order_digest([before])}
    with caplog.at_level(logging.WARNING):
        record = _resume(_trainer(order_digest([after])), checkpoint)
    said = [r.getMessage() for r in caplog.records if "training order" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith("resuming at step 12 on another training order than the checkpoint's")
    assert "copies of held-out texts" in said[0] and "fractional weight" in said[0]
    assert record["changes_on_resume"] == [
        {"step": 12, "before": order_digest([before]), "after": order_digest([after])}
    ]


def test_the_same_order_or_a_checkpoint_without_one_says_nothing(caplog):
    tok = _source([5, 7, 3, 9])
    first, _ = blend_order([("rtl", tok, np.arange(4), 1.5)], seed=3)
    again, _ = blend_order([("rtl", tok, np.arange(4), 1.5)], seed=3)
    digest = order_digest([first])
    assert digest == order_digest([again])
    with caplog.at_level(logging.WARNING):
        same = _resume(_trainer(digest), {"global_step": 4, ORDER_KEY: digest})
        older = _resume(_trainer(digest), {"global_step": 4})  # written before the order was recorded
    assert not [r for r in caplog.records if "training order" in r.getMessage()]
    assert "changes_on_resume" not in same and "changes_on_resume" not in older


def test_a_checkpoint_carries_the_order_and_earlier_changes_on():
    earlier = [{"step": 3, "before": "a", "after": "b"}]
    trainer = _trainer("b")
    _resume(trainer, {"global_step": 8, ORDER_KEY: "b", ORDER_CHANGES_KEY: earlier})
    trainer.world_size, trainer.callback_metrics = 1, {}
    trainer.fit_loop = SimpleNamespace(
        max_steps=-1, max_epochs=-1, epoch_loop=SimpleNamespace(global_step=9), epoch_progress=None
    )
    saved = {}
    RecordSettings({}).on_save_checkpoint(trainer, None, saved)
    assert saved[ORDER_KEY] == "b" and saved[ORDER_CHANGES_KEY] == earlier
