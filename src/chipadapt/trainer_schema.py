"""Lightning Trainer and callback settings users edit (`trainer.max_steps`, `trainer.devices`,
`trainer.precision`, `callbacks.checkpoint.every_n_train_steps`), checked with the rest of the config by
config_schema.validate; and, in the job that trains, whether this machine has what they ask for
(`check_trainer_on_this_machine`). Lightning checks these only when the Trainer is built, after the
data is prepared and the model loaded, and its error went through Hydra's error path (an "Error
executing job" line above ours) naming no key."""

import importlib.util
import inspect
import os
import re
from typing import Any, get_args

from omegaconf import DictConfig, ListConfig

from chipadapt.batch_plan import cpu_devices_refusal, processes_per_node
from chipadapt.errors import ChipadaptError

# Lightning Trainer and callback counts users edit: (lowest whole number, a null allowed, a fraction in
# (0, 1] allowed). Lightning checks some of these only once training starts, after the data is prepared,
# and with a traceback that names no key; `StepCheckpoint` not at all (-1 compares as "never").
TRAINER_COUNTS = {
    "trainer.max_steps": (-1, False, False),
    "trainer.max_epochs": (-1, True, False),
    "trainer.num_nodes": (1, False, False),
    "trainer.log_every_n_steps": (0, True, False),  # 0: no logging
    "trainer.num_sanity_val_steps": (-1, True, False),
    "trainer.val_check_interval": (
        1,
        True,
        True,
    ),  # also a time ("00:01:00:00") or a dict of one: Lightning checks those
    "trainer.limit_val_batches": (0, True, True),
    "callbacks.checkpoint.every_n_train_steps": (0, True, False),  # 0 or null: only the last step's checkpoint
    "callbacks.checkpoint.save_top_k": (-1, False, False),  # -1: every checkpoint; 0: last.ckpt only
    "callbacks.progress.every_n_steps": (1, False, False),
}
# Of these, the counts where 0 is a run that trains nothing: Lightning takes it, reports the run completed, and
# the starting model was saved as the result. -1 (and max_epochs=null) stays Lightning's "unset".
NO_ZERO = {"trainer.max_steps": "-1 for no step limit", "trainer.max_epochs": "-1 or null for no epoch limit"}


def _count(key: str, value: Any, low: int, nullable: bool, fraction: bool) -> Any:
    """The value as the whole number it is (`2e3` -> 2000), or a ChipadaptError naming the key."""
    if value is None and nullable:
        return None
    if isinstance(value, float) and fraction and 0 < value <= 1:
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        allowed = (
            f"a whole number >= {low}" + (", a fraction in (0, 1]" if fraction else "") + (", null" if nullable else "")
        )
        raise ChipadaptError(f"{key}: {value!r} is not {allowed}")
    return value


def check_devices(devices: Any, accelerator: Any = None) -> None:
    """`trainer.devices`: a count (-1 = all), `auto`, a list of indices or a string of them (`0,1`); on
    `trainer.accelerator=cpu` a count of processes > 0 or `auto` (Lightning refuses the rest, once the data
    is prepared). Whether `auto` resolves to the CPU is known only where the job trains:
    check_trainer_on_this_machine. A value of no accelerator's form is said as such first."""
    if not _device_form(devices):
        raise ChipadaptError(
            f"trainer.devices: {devices!r} is not a device count (-1 for all), auto, or a list of indices"
        )
    if isinstance(accelerator, str) and accelerator.lower() == "cpu" and devices != "auto":
        from lightning.pytorch.accelerators import CPUAccelerator

        try:
            CPUAccelerator.parse_devices(devices)
        except (TypeError, ValueError):
            raise ChipadaptError(cpu_devices_refusal(devices)) from None


def _device_form(devices: Any) -> bool:
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices >= 1 or devices == -1
    if isinstance(devices, str):
        return devices == "auto" or re.fullmatch(r"\s*-?\d+\s*(,\s*\d+\s*)*,?", devices) is not None
    if isinstance(devices, (list, ListConfig)):
        return bool(devices) and all(isinstance(d, int) and d >= 0 for d in devices)
    return False


def check_trainer(cfg: DictConfig) -> None:
    """A training run's Trainer and callback counts (whole numbers written as floats are made ints)."""
    for dotted, (low, nullable, fraction) in TRAINER_COUNTS.items():
        section, _, key = dotted.partition(".")
        node = cfg.get(section)
        if not isinstance(node, DictConfig):
            continue
        if "." in key:  # callbacks.<name>.<key>: only when that callback is on
            name, key = key.split(".")
            node = node.get(name)
            if not isinstance(node, DictConfig):
                continue
        if key in node and not (key == "val_check_interval" and isinstance(node[key], (str, DictConfig))):
            node[key] = _count(dotted, node[key], low, nullable, fraction)
            if dotted in NO_ZERO and node[key] == 0:
                raise ChipadaptError(f"{dotted}: 0 trains nothing; give a whole number >= 1, or {NO_ZERO[dotted]}")


def check_trainer_names(cfg: DictConfig) -> None:
    """A training run's devices, precision and accelerator names, and no argument the Trainer does not take:
    the config's last checks, since they import lightning (about 5 s), which a mistake elsewhere need not wait
    for."""
    if isinstance(cfg.get("trainer"), DictConfig) and "devices" in cfg.trainer:
        accelerator = cfg.trainer.get("accelerator")
        if _strategy_target(cfg.trainer.get("strategy")).startswith("fsdp") and accelerator == "cpu":
            raise ChipadaptError(FSDP_ON_CPU)  # before its devices, which name GPUs
        check_devices(cfg.trainer.devices, accelerator)
    trainer = cfg.get("trainer")
    if isinstance(trainer, DictConfig):
        check_precision(trainer.get("precision"))
        check_accelerator_name(trainer.get("accelerator"))
        check_trainer_arguments(trainer)


def lightning_precisions() -> tuple | None:
    """Every `precision` Lightning's Trainer accepts, from Lightning's own list (the strings, their
    aliases `bf16`, `32` and the ints 16, 32, 64); None where this Lightning keeps it elsewhere."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:
        return None
    return tuple(value for group in get_args(_PRECISION_INPUT) for value in get_args(group))


def check_precision(precision: Any) -> None:
    allowed = lightning_precisions()
    if precision is None or allowed is None or isinstance(precision, bool):
        return
    if precision not in allowed:
        names = ", ".join(repr(value) for value in allowed if isinstance(value, str))
        raise ChipadaptError(f"trainer.precision: {precision!r} is not a precision Lightning accepts ({names})")


# `gpu` is Lightning's word for whichever GPU backend the machine has (CUDA, else Apple's MPS).
ACCELERATOR_WORDS = ("auto", "gpu")


def check_accelerator_name(accelerator: Any) -> None:
    if not isinstance(accelerator, str):  # an Accelerator built from a _target_: Lightning's to check
        return
    from lightning.pytorch.accelerators import AcceleratorRegistry

    names = sorted(AcceleratorRegistry.available_accelerators()) + list(ACCELERATOR_WORDS)
    if accelerator.lower() not in names:
        raise ChipadaptError(f"trainer.accelerator: {accelerator!r} is not an accelerator ({', '.join(names)})")


# Trainer arguments the recipe (stages/common.build_trainer) passes itself, from these settings: a
# value under trainer.* would be replaced without a word.
SET_BY_RECIPE = {
    "accumulate_grad_batches": "data.global_batch_size and data.micro_batch_size (global = micro x "
    "processes x accumulation)",
    "gradient_clip_val": "optim.gradient_clip_val",
    "logger": "logger=csv|tensorboard|wandb",
    "callbacks": "the callbacks group (callbacks.NAME)",
    "default_root_dir": "hydra.run.dir",
}


def trainer_parameters(target: str) -> set[str] | None:
    """The keyword arguments `target` (lightning.Trainer, or a subclass a user names) takes; None when
    it takes any (**kwargs) or cannot be imported (instantiate then says so)."""
    from hydra.utils import get_object

    try:
        built = get_object(target)
        signature = inspect.signature(built.__init__ if inspect.isclass(built) else built)
    except Exception:  # noqa: BLE001 - not importable or no signature: nothing to compare here
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return {name for name in signature.parameters if name != "self"}


def check_trainer_arguments(trainer: DictConfig) -> None:
    """Every trainer.* key is an argument of the Trainer (`+trainer.foo=1` would fail once the data is
    prepared), and none is one the recipe sets from another key."""
    keys = [key for key in trainer if not str(key).startswith("_")]  # _target_, _convert_, ...: Hydra's
    for key in keys:
        if key in SET_BY_RECIPE:
            raise ChipadaptError(f"trainer.{key}: train.py sets it from {SET_BY_RECIPE[key]}; set that instead")
    known = trainer_parameters(str(trainer.get("_target_", "")))
    if known is None:
        return
    for key in keys:
        if key not in known:
            raise ChipadaptError(
                f"trainer.{key}: not an argument of {trainer._target_} (see its documentation for the arguments "
                "it takes)"
            )


def _strategy_target(strategy: Any) -> str:
    """`fsdp`, `ddp` ... or a strategy's `_target_` (chipadapt.scaleout.strategies.fsdp_strategy)."""
    if isinstance(strategy, DictConfig):
        return str(strategy.get("_target_", "")).rsplit(".", 1)[-1]
    return str(strategy or "")


FSDP_ON_CPU = "trainer=fsdp: FSDP needs GPUs (trainer.accelerator=gpu); on CPU use trainer=ddp"


def check_trainer_on_this_machine(trainer: DictConfig) -> None:
    """What the Trainer asks of the machine it trains on: a GPU asked for exists (and as many as
    `trainer.devices` names), FSDP runs on GPUs, DeepSpeed is installed. Called by the job that trains
    (pipeline.train, before any data is read), never where a sweep is only launched: a SLURM login node
    submitting jobs to GPU nodes (hydra/launcher=slurm) has no GPU itself."""
    import torch

    accelerator = trainer.get("accelerator", "auto")
    name = accelerator.lower() if isinstance(accelerator, str) else None
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if (name == "cuda" and not cuda) or (name == "gpu" and not (cuda or mps)):
        raise ChipadaptError(
            f"trainer.accelerator: {accelerator!r} asks for a GPU, but this machine has no GPU that torch can use "
            "(torch.cuda.is_available() is false); train on the CPU with trainer=cpu (or trainer.accelerator=cpu "
            "with trainer=ddp), or run on a GPU node"
        )
    on_cuda = cuda and name in ("gpu", "cuda", "auto")
    if on_cuda and name != "auto":
        check_gpu_count(trainer.get("devices"), torch.cuda.device_count())
    strategy = _strategy_target(trainer.get("strategy"))
    if strategy.startswith("fsdp") and not on_cuda:
        # Lightning checks this when the job starts its processes, for its own FSDP class only.
        raise ChipadaptError(FSDP_ON_CPU)
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ChipadaptError("trainer=deepspeed_*: DeepSpeed is not installed (pip install '.[gpu]')")
    check_launched_processes(trainer)


def check_gpu_count(devices: Any, count: int) -> None:
    """`trainer.devices` (a count, a list of indices or a string of them; -1 and auto: all) within the
    `count` GPUs this machine has."""
    if isinstance(devices, str) and re.fullmatch(r"\s*\d+\s*", devices):
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = [int(part) for part in devices.split(",") if part.strip()]
    if isinstance(devices, bool):
        return
    asked = devices if isinstance(devices, int) else None
    if isinstance(devices, (list, ListConfig)):
        asked = max(devices) + 1 if devices else None
        devices = list(devices)
    if asked is not None and asked > count:
        raise ChipadaptError(
            f"trainer.devices: {devices!r} asks for more GPUs than this machine has: it has {count} GPUs; "
            "trainer.devices=-1 uses every GPU of the node"
        )


def launched_processes() -> tuple[str, int] | None:
    """(how, processes) a launcher started this job with, read as Lightning reads it: torchrun's
    WORLD_SIZE first (it also runs inside SLURM), else srun's SLURM_NTASKS (not in an interactive
    `bash`/`interactive` allocation, where Lightning ignores SLURM); None when started by hand."""

    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return "torchrun started WORLD_SIZE", int(os.environ["WORLD_SIZE"])
    if "SLURM_NTASKS" in os.environ and SLURMEnvironment.job_name() not in ("bash", "interactive"):
        return "srun started SLURM_NTASKS", int(os.environ["SLURM_NTASKS"])
    return None


def check_launched_processes(trainer: DictConfig) -> None:
    """`trainer.devices` on `trainer.accelerator` (as Lightning parses them on this machine) x
    `trainer.num_nodes` is the number of processes the launcher started: Lightning checks this only
    once the Trainer is built, after the data is prepared, in a traceback from every rank."""
    per_node = processes_per_node(trainer.get("accelerator", "auto"), trainer.get("devices", "auto"))
    nodes = int(trainer.get("num_nodes", 1))
    launched = launched_processes()
    if launched is not None and launched[0].startswith("srun") and per_node * nodes == 1:
        # One process: Lightning runs a single-device strategy and reads nothing of SLURM, so a batch script's
        # `python train.py` in a job of several tasks (SLURM_NTASKS its job's count, not this process's) trains.
        launched = None
    if launched is None and nodes > 1 and os.environ.get("WORLD_SIZE") != str(per_node * nodes):
        # Lightning's own multi-node launch (a process per node started by hand) sets WORLD_SIZE only when it fits:
        # before that, node 1's process could not be told from a lone one and took the run folder, its resume
        # decision and, under FSDP's load_on_rank0, the whole model as rank 0 does.
        raise ChipadaptError(
            f"trainer.num_nodes={nodes} with no launcher (torchrun, srun): export WORLD_SIZE={per_node * nodes} "
            "(trainer.devices x trainer.num_nodes), MASTER_ADDR, MASTER_PORT and NODE_RANK on every node, as "
            "Lightning's multi-node launch needs, or start the processes with torchrun or srun"
        )
    if launched is not None and launched[1] != per_node * nodes:
        how, count = launched
        raise ChipadaptError(
            f"trainer.devices={trainer.get('devices')!r} x trainer.num_nodes={nodes} is {per_node * nodes} "
            f"processes, but {how}={count}: set trainer.devices to the processes per node (torchrun "
            "--nproc_per_node, srun --ntasks-per-node) and trainer.num_nodes to the nodes"
        )
