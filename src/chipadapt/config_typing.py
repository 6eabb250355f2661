"""A config group read as its schema types it (config_groups): OmegaConf converts what it can
("1e-3" -> 0.001), and what it cannot, a key the schema lacks, a value out of range or a required key
left unset is a ChipadaptError naming the key."""

import math
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import BooleanNode, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from chipadapt.errors import ChipadaptError

WHERE = "see src/chipadapt/config_groups.py for the keys each group takes"


def whole_numbers(schema: type, node: DictConfig) -> None:
    """`max_bytes=5e6` is a float to Hydra's parser, and a whole number to the user who wrote it: an
    integral float in a field the schema types int is made that int, in the config the job reads.
    `5.5` stays a float and is refused by `typed_group`, naming the key."""
    for spec in fields(schema):
        value = node.get(spec.name) if spec.name in node else None
        if is_dataclass(spec.type) and isinstance(value, DictConfig):
            whole_numbers(spec.type, value)
        elif spec.type is int:
            whole_in_place(node, spec.name)


def whole_in_place(node: DictConfig, key: str) -> Any:
    """`node[key]` made an int where it is an integral float (`5e6`, `10.0`), written back; returns the value.
    Every whole-number setting reads floats so, typed by a schema or not."""
    value = node.get(key) if key in node else None
    if isinstance(value, float) and value.is_integer():
        node[key] = value = int(value)
    return value


def true_or_false(node: DictConfig, key: str, where: str) -> bool:
    """`node[key]` as a bool by OmegaConf's rule for a schema's bool fields (true/false, yes/no, on/off, y/n,
    any case), written back, so a switch without a schema (`eval.ifeval.chat=no`) reads as one with a
    schema does (`loss_guard.enabled=no`); anything else is refused, naming `where`."""
    try:
        value = BooleanNode(value=node[key])._value()
    except OmegaConfBaseException:
        value = None
    if not isinstance(value, bool):
        raise ChipadaptError(f"{where}: {node[key]!r} is not true or false")
    node[key] = value
    return value


# Keys a release removed, with what replaces them: an old command line or config names the new key,
# not "unknown key" (cli.describe_hydra_error says the same for an override of a key no config has).
RETIRED_KEYS = {
    "data.val_max_sequences": "replaced by data.val_max_bytes, bytes of held-out text per validation split (N "
    "sequences were other text at each seq_len and tokenizer; e.g. data.val_max_bytes=32768)",
    "attribute_order": "retired: chat.py writes a SteerLM model's attributes in the order its folder records "
    "(steerlm_attribute_order in its config.json, the order it was trained in), and refuses attributes for a "
    "folder that records none; leave the setting out",
}


def list_of_one(given: Any) -> str:
    """`[given]` as a command line writes the list holding `given` as its one text item: quoted where Hydra would
    read it bare as something else (`[a,b.txt]` is two items, `[True]` a bool, `[5]` a number)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    text = str(given)
    try:
        bare = OverridesParser.create().parse_override(f"key=[{text}]").value()
    except HydraException:  # `x]`, `a=b`: no list at all written bare
        bare = None
    return f"[{text}]" if bare == [text] else f"[{text!r}]"


def typed_group(group: str, schema: type, node: DictConfig) -> dict:
    """The group merged into its schema: OmegaConf converts what it can ("1e-3" -> 0.001) and
    raises for what it cannot and for keys the schema lacks. Returns plain values, without the
    keys this group's YAML does not set."""
    try:
        values = OmegaConf.to_container(node, resolve=True)
        typed = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), values))
        return {key: value for key, value in typed.items() if value != "???"}
    except OmegaConfBaseException as err:
        key = f"{group}.{err.full_key}" if getattr(err, "full_key", None) else group
        message = str(getattr(err, "msg", err)).splitlines()[0]
        if "not in struct" in message or "Key '" in message and "not in" in message:
            raise ChipadaptError(f"{key}: {RETIRED_KEYS.get(key, f'unknown key ({WHERE})')}") from None
        if "is not a ListConfig" in message:  # OmegaConf's "Invalid value assigned: AnyNode is not a ListConfig"
            given = OmegaConf.select(node, str(err.full_key)) if getattr(err, "full_key", None) else None
            raise ChipadaptError(f"{key}: {given!r} is not a list; write {list_of_one(given)}") from None
        raise ChipadaptError(f"{key}: {message}") from None


def bounded_number(key: str, value: Any, low: float | None = None, high: float | None = None, low_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ChipadaptError(f"{key}: {value!r} is not a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        raise ChipadaptError(f"{key}: {value} must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise ChipadaptError(f"{key}: {value} must be <= {high}")
    return float(value)


def required_value(group: str, values: dict, key: str) -> Any:
    if key not in values:
        raise ChipadaptError(f"{group}.{key}: required, not set")
    return values[key]
