"""A DAPT source given a weight above 0 is in the blend: a fraction that rounds to no document (0.5 of
one, as `+data.sources.gen.weight=0.5` on a one-document source gave `blended tokens 0, share 0.0%`)
takes one, and says so in one line naming the source; a source whose documents are all held out adds
nothing, and says that."""

import logging

import numpy as np
from test_packing_and_blend import make_source

from chipadapt.data.blend import blend_order, copies


def test_a_fraction_that_rounds_to_no_document_takes_one_and_names_the_source(caplog):
    hand, gen = make_source([10] * 9), make_source([7])
    with caplog.at_level(logging.WARNING, logger="chipadapt.data.blend"):
        order, rows = blend_order([("hand", hand, np.arange(9), 1.0), ("gen", gen, np.arange(1), 0.5)], seed=0)
    assert rows[1].blended_tokens == 7 and rows[1].share > 0
    assert np.bincount(order[:, 0]).tolist() == [9, 1]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("data.sources.gen: weight x epochs 0.5 of 1 training")


def test_weights_that_give_documents_and_weight_zero_are_unchanged_and_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="chipadapt.data.blend"):
        assert copies(0.5, 4) == (0, 2)
        assert copies(0.0, 4) == (0, 0)  # weight 0 leaves the source out, as asked
        assert copies(1.5, 1) == (1, 0)  # a whole copy: the source is in
    assert not caplog.records


def test_a_weighted_source_with_every_document_held_out_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="chipadapt.data.blend"):
        _, rows = blend_order(
            [("hand", make_source([10] * 3), np.arange(3), 1.0), ("gen", make_source([7]), np.arange(0), 1.0)], seed=0
        )
    assert rows[1].blended_tokens == 0
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["data.sources.gen"]
