"""Weight decay goes by a parameter's rank (matrices decayed, norms and biases not). Under FSDP every
parameter is a 1-D shard view by the time the optimizer is built: all 20 of the tiny model's went
undecayed on two ranks (15 decayed without FSDP). The ranks recorded as built decide instead."""

import torch

from chipadapt.modules.optim import decay_groups


def wrapped_like_fsdp() -> torch.nn.Module:
    """A linear layer as FSDP (use_orig_params) and activation checkpointing leave it: wrapper
    prefixes in the names, and each parameter flattened to one dimension."""
    inner = torch.nn.Module()
    inner.weight = torch.nn.Parameter(torch.zeros(6))  # a 2 x 3 matrix, flattened
    inner.bias = torch.nn.Parameter(torch.zeros(2))
    checkpointed = torch.nn.Module()
    checkpointed.add_module("_checkpoint_wrapped_module", inner)
    root = torch.nn.Module()
    root.add_module("_fsdp_wrapped_module", checkpointed)
    return root


def decayed_names(model: torch.nn.Module, groups: list[dict]) -> set[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for p in groups[0]["params"]}


def test_the_ranks_as_built_decide_what_decays_under_fsdp():
    model = wrapped_like_fsdp()
    assert decayed_names(model, decay_groups(model, 0.1)) == set()  # what FSDP gave before
    groups = decay_groups(model, 0.1, ndims={"weight": 2, "bias": 1})
    assert decayed_names(model, groups) == {"_fsdp_wrapped_module._checkpoint_wrapped_module.weight"}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0


def test_the_causal_lm_module_records_its_parameters_ranks(tmp_path):
    from conftest import TINY_FAST, compose
    from hydra.utils import instantiate

    from chipadapt.models.hf_folder import resolve_model_folder

    cfg = compose(TINY_FAST, tmp_path / "run")
    module = instantiate(cfg.stage.module)(model_folder=resolve_model_folder(cfg.model), val_split_names=["domain"])
    assert module.param_ndims == {n: p.ndim for n, p in module.model.named_parameters()}
    assert sum(ndim >= 2 for ndim in module.param_ndims.values()) >= 2  # matrices among them
