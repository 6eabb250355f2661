"""Lightning Trainer and callback settings users edit (`trainer.max_steps`, `trainer.devices`,
`callbacks.checkpoint.every_n_train_steps`), checked with the rest of the config by
config_schema.validate. Lightning checks some only once training starts, after the data is
prepared, with a traceback that names no key."""

import re
from typing import Any

from omegaconf import DictConfig, ListConfig

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
    "callbacks.progress.every_n_steps": (1, False, False),
}


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


def check_devices(devices: Any) -> None:
    """`trainer.devices`: a count (-1 = all), `auto`, a list of indices or a string of them (`0,1`)."""
    if isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1):
        return
    if isinstance(devices, str) and (devices == "auto" or re.fullmatch(r"\s*-?\d+\s*(,\s*\d+\s*)*,?", devices)):
        return
    if isinstance(devices, (list, ListConfig)) and devices and all(isinstance(d, int) and d >= 0 for d in devices):
        return
    raise ChipadaptError(f"trainer.devices: {devices!r} is not a device count (-1 for all), auto, or a list of indices")


def check_trainer(cfg: DictConfig) -> None:
    """A training run's Trainer and callback counts; whole numbers written as floats are made ints."""
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
    if isinstance(cfg.get("trainer"), DictConfig) and "devices" in cfg.trainer:
        check_devices(cfg.trainer.devices)
