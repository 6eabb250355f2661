"""conftest.process_state_kept: what one test leaves in the process (environment, matmul precision), as an
in-process training run does, is gone before the next test of the worker. The two tests run in file order; what
an earlier file's module fixture left (e.g. PL_GLOBAL_SEED) may be there before either."""

import os

import torch

BEFORE: dict = {}


def test_a_test_that_trains_in_process_leaves_state_behind():
    BEFORE.update(seed=os.environ.get("PL_GLOBAL_SEED"), precision=torch.get_float32_matmul_precision())
    os.environ["PL_GLOBAL_SEED"] = "98765"
    os.environ["CHIPADAPT_TEST_LEFT_BEHIND"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "0"
    torch.set_float32_matmul_precision("medium" if BEFORE["precision"] != "medium" else "high")


def test_the_next_test_starts_without_it():
    assert BEFORE, "runs after the test above"
    assert os.environ.get("PL_GLOBAL_SEED") == BEFORE["seed"]
    assert "CHIPADAPT_TEST_LEFT_BEHIND" not in os.environ
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the session's value, back
    assert torch.get_float32_matmul_precision() == BEFORE["precision"]
