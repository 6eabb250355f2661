"""The optimizer and learning-rate schedule of every LightningModule here, from the `optim` group."""

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from chipadapt.modules.lr_schedule import warmup_that_fits

log = logging.getLogger(__name__)

# Values looked at per tensor to estimate how many updates round away (enough for a share in %).
SAMPLE_PER_TENSOR = 1 << 20


# What FSDP (and activation checkpointing) put into parameter names as they wrap modules.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def unwrapped_name(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def decay_groups(
    model: torch.nn.Module,
    weight_decay: float,
    lr_by_prefix: dict[str, float] | None = None,
    ndims: dict[str, int] | None = None,
) -> list[dict]:
    """Weight decay on matrices only: norms and biases (1-D tensors) are not decayed, as in Megatron/NeMo.
    `lr_by_prefix`: parameters whose names start with a prefix get that learning rate (a new head
    beside a pretrained body), the rest the optimizer's.

    The first two groups are always [decayed, not decayed], even when one is empty (LoRA trains only
    matrices): a checkpoint's optimizer state is matched to the groups by position, so their number
    and order must not depend on the model. Groups with their own learning rate come after them.
    `ndims`: each parameter's rank before FSDP flattened it into a 1-D shard (by unwrapped name)."""
    groups: dict[tuple[bool, float | None], list] = {(True, None): [], (False, None): []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            lr = next((lr for prefix, lr in (lr_by_prefix or {}).items() if name.startswith(prefix)), None)
            ndim = (ndims or {}).get(unwrapped_name(name), param.ndim)
            groups.setdefault((ndim >= 2, lr), []).append(param)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, **({"lr": lr} if lr is not None else {})}
        for (decay, lr), params in groups.items()
    ]


def optimizers_for(
    model: torch.nn.Module,
    optim: DictConfig,
    trainer,
    lr_by_prefix: dict[str, float] | None = None,
    ndims: dict[str, int] | None = None,
):
    """`configure_optimizers`' return value: the optimizer over `model`, with the per-step schedule when set."""
    params = decay_groups(model, optim.optimizer.weight_decay, lr_by_prefix, ndims)
    optimizer = instantiate(optim.optimizer)(params=params)
    warn_if_updates_round_away(optimizer, trainer)
    if optim.scheduler is None:
        return optimizer
    total = int(trainer.estimated_stepping_batches)
    fitted = {}
    if "num_warmup_steps" in optim.scheduler:
        fitted["num_warmup_steps"] = warmup_fitted_to_run(int(optim.scheduler.num_warmup_steps), total, optim, trainer)
    scheduler = instantiate(optim.scheduler, **fitted)(optimizer=optimizer, num_training_steps=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_fitted_to_run(warmup: int, total: int, optim: DictConfig, trainer) -> int:
    """The warm-up this run has room for, with one line when it is shorter than configured: a warm-up
    longer than the run (adamw_cosine's 10 steps in a 3-step run) trained at a fraction of optim.lr,
    or, in a 1-step run, at lr 0. Capped rather than refused: a short run is usually a test of the
    pipeline, and the configured warm-up is the optim group's default more often than a choice."""
    fitted = warmup_that_fits(warmup, total)
    if fitted < warmup and getattr(trainer, "is_global_zero", True):
        log.warning(
            "optim.scheduler.num_warmup_steps=%d is more than half of the %d step%s this run takes: warming up "
            "over %d step%s instead, so it trains at optim.lr=%g (train longer to warm up as configured)",
            warmup,
            total,
            "" if total == 1 else "s",
            fitted,
            "" if fitted == 1 else "s",
            optim.lr,
        )
    return fitted


def share_of_updates_lost(param: torch.Tensor, lr: float) -> float:
    """The share of `param`'s values for which an update of size `lr` is under half the spacing of
    their floating-point format, so rounds away (Adam moves a weight by about lr a step)."""
    values = param.detach().flatten()
    values = values[:: max(1, values.numel() // SAMPLE_PER_TENSOR)].float().abs()
    _, exponent = torch.frexp(values)  # |w| = m 2^e with m in [0.5, 1): spacing eps 2^(e-1)
    spacing = torch.finfo(param.dtype).eps * torch.pow(2.0, exponent.float() - 1)
    lost = (values > 0) & (lr < spacing / 2)
    return float(lost.float().mean()) if values.numel() else 0.0


def warn_if_updates_round_away(optimizer: torch.optim.Optimizer, trainer) -> None:
    """One line when weights that train are half precision (trainer.precision=bf16-true/16-true casts
    every weight): at ChipNeMo's lr 5e-6 most of a model's weights would never change. A warning, not
    a refusal: at larger learning rates (SFT, LoRA at 1e-4) pure bf16 training is a real memory saving."""
    half = [
        (param, group["lr"])
        for group in optimizer.param_groups
        for param in group["params"]
        if param.dtype in (torch.bfloat16, torch.float16)
    ]
    if not half or not getattr(trainer, "is_global_zero", True):
        return
    total = sum(p.numel() for p, _ in half)
    lost = sum(share_of_updates_lost(p, lr) * p.numel() for p, lr in half) / total
    if lost == 0:
        return
    dtype = str(half[0][0].dtype).removeprefix("torch.")
    log.warning(
        "training %s weights (trainer.precision=%s): at lr %g an update is under half the %s spacing of "
        "%.1f%% of them and rounds away, so they do not train; trainer.precision=bf16-mixed keeps float32 "
        "master weights",
        dtype,
        getattr(trainer, "precision", "?"),
        max(lr for _, lr in half),
        dtype,
        100 * lost,
    )
