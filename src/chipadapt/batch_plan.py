"""Global batch = micro batch x processes x accumulation: the global batch in config always holds."""

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, ListConfig

from chipadapt.errors import ChipadaptError


def world_size(trainer_cfg: DictConfig) -> int:
    devices = trainer_cfg.devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, (list, ListConfig)):
        per_node = len(devices)
    elif isinstance(devices, int) and devices > 0:
        per_node = devices
    elif trainer_cfg.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        per_node = torch.cuda.device_count()  # devices=-1 or "auto" on a GPU node
    else:
        per_node = 1
    return per_node * int(trainer_cfg.num_nodes)


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int
    micro_batch: int
    world_size: int
    accumulation: int
    seq_len: int

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len


def batch_plan(data_cfg: DictConfig, trainer_cfg: DictConfig) -> BatchPlan:
    global_batch, micro = int(data_cfg.global_batch_size), int(data_cfg.micro_batch_size)
    world = world_size(trainer_cfg)
    if global_batch <= 0 or micro <= 0:
        raise ChipadaptError("data.global_batch_size and data.micro_batch_size must be positive")
    if global_batch % (micro * world):
        raise ChipadaptError(
            f"data.global_batch_size={global_batch} is not a multiple of "
            f"data.micro_batch_size={micro} x {world} processes"
        )
    return BatchPlan(global_batch, micro, world, global_batch // (micro * world), int(data_cfg.seq_len))


def planned_steps(steps_per_epoch: int, max_steps: int | None, max_epochs: int | None) -> tuple[int, str | None]:
    """The optimizer steps a run takes, and a note when trainer.max_steps asks for more than the epochs
    hold. Lightning stops at whichever of max_steps and max_epochs comes first; max_epochs unset is
    1000 epochs when max_steps is unset too, else no limit, and -1 is no limit."""
    max_steps = max_steps if max_steps and max_steps > 0 else None
    if max_epochs is None:
        max_epochs = 1000 if max_steps is None else -1
    by_epochs = steps_per_epoch * max_epochs if max_epochs >= 0 else None
    limits = [s for s in (max_steps, by_epochs) if s is not None]
    steps = min(limits) if limits else 0  # neither: no end (max_epochs=-1 without max_steps)
    note = None
    if max_steps is not None and by_epochs is not None and by_epochs < max_steps:
        note = (
            f"trainer.max_steps={max_steps} is more than trainer.max_epochs={max_epochs} holds "
            f"({steps_per_epoch:,} steps an epoch): the run stops after {by_epochs:,}; raise trainer.max_epochs "
            "(or the sources' epochs) to train longer"
        )
    return steps, note


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"


def describe_plan(plan: BatchPlan, steps: int, tokens_per_s_per_gpu: float | None, gpu: str | None) -> str:
    """One paragraph a person reads before committing GPUs: batch layout, tokens and estimated cost."""
    tokens = steps * plan.tokens_per_step
    text = (
        f"plan: global batch {plan.global_batch} = micro {plan.micro_batch} x {plan.world_size} processes x "
        f"{plan.accumulation} accumulation; {plan.seq_len} tokens per sequence; {plan.tokens_per_step:,} tokens/step; "
        f"{steps:,} steps = {_count(tokens)} tokens"
    )
    if tokens_per_s_per_gpu:
        gpu_hours = tokens / tokens_per_s_per_gpu / 3600
        text += (
            f"; at {tokens_per_s_per_gpu:,.0f} tokens/s per GPU{f' ({gpu})' if gpu else ''}: "
            f"{gpu_hours:,.1f} GPU-hours, {gpu_hours / plan.world_size:,.1f} h on {plan.world_size} GPU(s)"
        )
    return text
