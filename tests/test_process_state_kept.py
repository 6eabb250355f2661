"""conftest.process_state_kept: what one test leaves in the process (environment, matmul precision), as an
in-process training run does, is gone before the next test of the worker. The two tests run in file order."""

import os

import torch


def test_a_test_that_trains_in_process_leaves_state_behind():
    os.environ["PL_GLOBAL_SEED"] = "1234"
    os.environ["HF_HUB_OFFLINE"] = "0"
    torch.set_float32_matmul_precision("medium")


def test_the_next_test_starts_without_it():
    assert "PL_GLOBAL_SEED" not in os.environ
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the session's value, back
    assert torch.get_float32_matmul_precision() == "highest"
