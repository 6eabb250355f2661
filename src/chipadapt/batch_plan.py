"""Global batch = micro batch x processes x accumulation: the global batch in config always holds."""

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig

from chipadapt.errors import ChipadaptError


def _accelerator_class(accelerator: Any) -> type | None:
    """The Lightning accelerator class `trainer.accelerator` names on this machine, resolved as
    Lightning resolves it (`auto`: TPU, MPS, CUDA, else CPU; `gpu`: MPS, else CUDA); None for an
    Accelerator built from a _target_, or `gpu` on a machine without one (check_trainer_on_this_machine
    refuses that where the job trains)."""
    if not isinstance(accelerator, str):
        return None
    from lightning.fabric.utilities.device_parser import _select_auto_accelerator
    from lightning.pytorch.accelerators import AcceleratorRegistry, CUDAAccelerator, MPSAccelerator

    name = accelerator.lower()
    if name == "auto":
        name = _select_auto_accelerator()
    elif name == "gpu":
        name = "mps" if MPSAccelerator.is_available() else "cuda" if CUDAAccelerator.is_available() else None
    if name is None or name not in AcceleratorRegistry:
        return None
    return AcceleratorRegistry[name]["accelerator"]


def _config_count(devices: Any) -> int:
    """The processes a node runs as the config writes them, where Lightning cannot be asked."""
    if isinstance(devices, str) and "," in devices:
        return len([part for part in devices.split(",") if part.strip()])
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    if isinstance(devices, (list, ListConfig)):
        return len(devices)
    return devices if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 else 1


def processes_per_node(accelerator: Any, devices: Any) -> int:
    """The processes Lightning starts on each node for `trainer.devices` on `trainer.accelerator`,
    read with Lightning's own parser: a list or "0,1" is its length, -1 and "auto" every device
    visible. Anything else counted here would let the accumulation, and so the global batch, differ
    from what the Trainer runs without a word."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    cls = _accelerator_class(accelerator)
    if cls is None:
        return _config_count(devices)
    flag = list(devices) if isinstance(devices, ListConfig) else devices
    if flag == "auto":
        flag = cls.auto_device_count()
    try:
        return len(cls.get_parallel_devices(cls.parse_devices(flag)))
    except (TypeError, ValueError, MisconfigurationException) as err:
        if cls.__name__ == "CPUAccelerator":
            raise ChipadaptError(cpu_devices_refusal(devices)) from None
        raise ChipadaptError(
            f"trainer.devices: {devices!r} with trainer.accelerator={accelerator!r}: Lightning refuses it "
            f"({str(err).strip()}); trainer.devices=-1 uses every device of the node"
        ) from None


def cpu_devices_refusal(devices: Any) -> str:
    return (
        f"trainer.devices: {devices!r} is not a process count for trainer.accelerator=cpu, which takes a whole "
        "number > 0 (e.g. trainer.devices=2 for 2 processes); -1 and lists of indices such as '0,1' select GPUs"
    )


def world_size(trainer_cfg: DictConfig) -> int:
    per_node = processes_per_node(trainer_cfg.get("accelerator", "auto"), trainer_cfg.devices)
    return per_node * int(trainer_cfg.num_nodes)


def check_trainer_world(plan_world: int, trainer: Any) -> None:
    """After the Trainer is built: the processes it runs are the ones the accumulation was computed
    for, else the global batch trained differs from data.global_batch_size."""
    if int(trainer.world_size) != plan_world:
        raise ChipadaptError(
            f"trainer: the Trainer runs {trainer.world_size} processes but the batch plan was computed for "
            f"{plan_world} (trainer.devices x trainer.num_nodes); the global batch would not be "
            "data.global_batch_size: set trainer.devices and trainer.num_nodes to the processes the launcher starts"
        )


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
    1000 epochs when max_steps is unset too, else no limit, and -1 is no limit (0 is 0 steps, as in Lightning)."""
    max_steps = max_steps if max_steps is not None and max_steps >= 0 else None
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


def epoch_shape(train_sequences: int, global_batch: int) -> tuple[int, int]:
    """(optimizer steps, sequences trained) in one epoch of `train_sequences` packed sequences, cut as
    data/resume_sampler.py cuts it: whole global batches, the rest left out; a blend smaller than one
    global batch is one step of all its sequences."""
    if train_sequences >= global_batch:
        steps = train_sequences // global_batch
        return steps, steps * global_batch
    return 1, train_sequences


def step_shape(plan: BatchPlan, train_sequences: int | None) -> tuple[int, int]:
    """(sequences each step trains on, sequences an epoch leaves out) for a blend of `train_sequences`."""
    if train_sequences is None:
        return plan.global_batch, 0
    steps_per_epoch, trained = epoch_shape(train_sequences, plan.global_batch)
    return trained // steps_per_epoch, train_sequences - trained


def planned_tokens(plan: BatchPlan, steps: int, train_sequences: int | None = None) -> int:
    return steps * step_shape(plan, train_sequences)[0] * plan.seq_len


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"


def describe_plan(
    plan: BatchPlan,
    steps: int,
    tokens_per_s_per_gpu: float | None,
    gpu: str | None,
    train_sequences: int | None = None,
) -> str:
    """One paragraph a person reads before committing GPUs: batch layout, tokens and estimated cost.
    `train_sequences`: the packed sequences an epoch of the blend
    holds (epochs of its sources included), so a blend smaller than one global batch is counted as the
    smaller steps it gives, and the sequences left out of whole global batches are said."""
    step_sequences, left_out = step_shape(plan, train_sequences)
    step_tokens = step_sequences * plan.seq_len
    tokens = steps * step_tokens
    text = (
        f"plan: global batch {plan.global_batch} = micro {plan.micro_batch} x {plan.world_size} processes x "
        f"{plan.accumulation} accumulation; {plan.seq_len} tokens per sequence; {plan.tokens_per_step:,} tokens/step; "
    )
    if step_sequences < plan.global_batch:
        text += (
            f"the blend holds {step_sequences:,} sequences, fewer than one global batch: each step trains on "
            f"{step_sequences:,} ({step_tokens:,} tokens); "
        )
    elif left_out:
        text += f"{left_out:,} sequences an epoch left out (less than a whole global batch); "
    text += f"{steps:,} steps = {_count(tokens)} tokens"
    if tokens_per_s_per_gpu:
        gpu_hours = tokens / tokens_per_s_per_gpu / 3600
        text += (
            f"; at {tokens_per_s_per_gpu:,.0f} tokens/s per GPU{f' ({gpu})' if gpu else ''}: "
            f"{gpu_hours:,.1f} GPU-hours, {gpu_hours / plan.world_size:,.1f} h on {plan.world_size} GPU(s)"
        )
    return text


def run_plan(plan: BatchPlan, train_sequences: int, trainer_cfg: DictConfig, plan_cfg: DictConfig) -> dict:
    """What a run on a blend of `train_sequences` packed sequences (its sources' epochs included) will
    train: {text, steps, tokens, note}; `note` when trainer.max_steps asks for more than the epochs hold."""
    epochs = trainer_cfg.get("max_epochs")
    steps_per_epoch, _ = epoch_shape(train_sequences, plan.global_batch)
    steps, note = planned_steps(steps_per_epoch, trainer_cfg.get("max_steps"), None if epochs is None else int(epochs))
    text = describe_plan(plan, steps, plan_cfg.get("tokens_per_s_per_gpu"), plan_cfg.get("gpu"), train_sequences)
    return {"text": text, "steps": steps, "tokens": planned_tokens(plan, steps, train_sequences), "note": note}
