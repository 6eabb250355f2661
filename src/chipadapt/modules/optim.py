"""The optimizer and learning-rate schedule of every LightningModule here, from the `optim` group."""

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: norms and biases (1-D tensors) are not decayed, as in Megatron/NeMo."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizers_for(model: torch.nn.Module, optim: DictConfig, trainer):
    """`configure_optimizers`' return value: the optimizer over `model`, with the per-step schedule when set."""
    optimizer = instantiate(optim.optimizer)(params=decay_groups(model, optim.optimizer.weight_decay))
    if optim.scheduler is None:
        return optimizer
    scheduler = instantiate(optim.scheduler)(
        optimizer=optimizer, num_training_steps=int(trainer.estimated_stepping_batches)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
