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
