"""The trained weights as one full state dict on rank 0, whatever the strategy sharded them into."""

import torch


def full_model_state(trainer, module) -> dict[str, torch.Tensor] | None:
    """None where the module's own `state_dict()` is already complete (single process, DDP)."""
    from lightning.pytorch.strategies import FSDPStrategy

    if not isinstance(trainer.strategy, FSDPStrategy):
        return None
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    wrapped = trainer.strategy.model
    with FSDP.state_dict_type(
        wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    ):
        state = wrapped.state_dict()
    prefix = "model."  # the LightningModule holds the HF model as `self.model`
    return {
        k[len(prefix) :].replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", ""): v
        for k, v in state.items()
        if k.startswith(prefix)
    }


def publishable_model(module, full_state: dict[str, torch.Tensor] | None):
    """On rank 0, the model a stage saves and the weights to save it with: `module.model` and
    `full_state` as they are, except for LoRA under FSDP. There the live model's parameters are this
    rank's shards, and peft's `save_pretrained` and `merge_and_unload` read them (the first would
    gather them, on rank 0 alone: a hang). So the model is built again without storage and given the
    gathered tensors themselves (`assign`: no second copy in memory), a plain peft model that saves
    the adapters and merges them as a single-process run does."""
    if full_state is None or not hasattr(module.model, "merge_and_unload"):
        return module.model, full_state
    from chipadapt.models.hf_folder import empty_causal_lm
    from chipadapt.models.lora import apply_lora

    frozen_dtype = next(p.dtype for p in module.model.parameters() if not p.requires_grad)
    attention = module.model.config._attn_implementation
    base = empty_causal_lm(module.model_folder, str(frozen_dtype).removeprefix("torch."), attention)
    unsharded = apply_lora(base, module.peft_cfg, module.model_folder)
    unsharded.load_state_dict(full_state, strict=True, assign=True)
    unsharded.get_base_model().tie_weights()  # assign gave a tied head and embedding two tensors
    return unsharded, None
