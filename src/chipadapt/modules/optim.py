"""The optimizer and learning-rate schedule of every LightningModule here, from the `optim` group."""

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig


def decay_groups(
    model: torch.nn.Module, weight_decay: float, lr_by_prefix: dict[str, float] | None = None
) -> list[dict]:
    """Weight decay on matrices only: norms and biases (1-D tensors) are not decayed, as in Megatron/NeMo.
    `lr_by_prefix`: parameters whose names start with a prefix get that learning rate (a new head
    beside a pretrained body), the rest the optimizer's.

    The first two groups are always [decayed, not decayed], even when one is empty (LoRA trains only
    matrices): a checkpoint's optimizer state is matched to the groups by position, so their number
    and order must not depend on the model. Groups with their own learning rate come after them."""
    groups: dict[tuple[bool, float | None], list] = {(True, None): [], (False, None): []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            lr = next((lr for prefix, lr in (lr_by_prefix or {}).items() if name.startswith(prefix)), None)
            groups.setdefault((param.ndim >= 2, lr), []).append(param)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, **({"lr": lr} if lr is not None else {})}
        for (decay, lr), params in groups.items()
    ]


def optimizers_for(model: torch.nn.Module, optim: DictConfig, trainer, lr_by_prefix: dict[str, float] | None = None):
    """`configure_optimizers`' return value: the optimizer over `model`, with the per-step schedule when set."""
    params = decay_groups(model, optim.optimizer.weight_decay, lr_by_prefix)
    optimizer = instantiate(optim.optimizer)(params=params)
    if optim.scheduler is None:
        return optimizer
    scheduler = instantiate(optim.scheduler)(
        optimizer=optimizer, num_training_steps=int(trainer.estimated_stepping_batches)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
