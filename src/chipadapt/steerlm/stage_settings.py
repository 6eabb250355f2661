"""The settings users edit of `stage=annotate` and `stage=bootstrap`, checked with the rest of the config
before anything is read or written (config_schema.validate calls `check_steerlm_stages`): a count that
selects nothing (`annotate.limit=0` divided by zero after writing an empty file; `-1` dropped the last
conversation as a Python slice does), and attribute settings a SteerLM model cannot be steered by: a
misspelt name (`helpfulnes`) or a value off SteerLM's 0-4 scale (`quality: 9`) would be sampled under
and reported as if asked for."""

import difflib
import math
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.steerlm.attribute_record import recorded_attribute_order

# Counts of each stage: a whole number >= 1; `limit` may be null (every conversation / prompt).
COUNTS = {
    "annotate": ("limit", "max_tokens", "batch_size"),
    "bootstrap": ("limit", "samples_per_setting", "max_new_tokens", "max_tokens", "batch_size"),
}
NULL_MEANS = {"limit": "null takes them all"}


def _whole_numbers(section: str, node: DictConfig) -> None:
    for key in COUNTS[section]:
        value = node.get(key)
        if value is None and key in NULL_MEANS:
            continue
        if isinstance(value, float) and value.is_integer():  # `limit=1e3`
            node[key] = value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            also = f" ({NULL_MEANS[key]})" if key in NULL_MEANS else ""
            raise ChipadaptError(f"{section}.{key}: {value!r} is not a whole number >= 1{also}")


def check_attribute_setting(key: str, setting, order: list[str] | None) -> None:
    """One attribute setting ({name: value}): names among `order` (when known), values on the 0-4 scale."""
    from chipadapt.data.conversations import ATTRIBUTE_SCALE

    if not isinstance(setting, dict) or not setting:
        raise ChipadaptError(f"{key}: expected a mapping of attribute: value, e.g. {{quality: 4, humor: 0}}")
    low, high = ATTRIBUTE_SCALE
    for name in setting:  # a misspelt name first: it is what makes a value look wrong
        if order is not None and name not in order:
            close = difflib.get_close_matches(str(name), order, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ChipadaptError(
                f"{key}.{name}: not an attribute the model is prompted with ({hint}one of {', '.join(order)})"
            )
    for name, value in setting.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ChipadaptError(f"{key}.{name}: {value!r} is off SteerLM's {low}-{high} scale")


def check_bootstrap(node: DictConfig, order: list[str] | None) -> None:
    _whole_numbers("bootstrap", node)
    temperature = node.get("temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ChipadaptError(f"bootstrap.temperature: {temperature!r} is not a number")
    if temperature < 0:
        raise ChipadaptError(f"bootstrap.temperature: {temperature} must be >= 0 (0: greedy)")
    settings = node.get("attribute_settings")
    if not isinstance(settings, ListConfig) or not settings:
        raise ChipadaptError("bootstrap.attribute_settings: expected a list of settings, e.g. [{quality: 4, humor: 0}]")
    for i, setting in enumerate(OmegaConf.to_container(settings, resolve=True)):
        check_attribute_setting(f"bootstrap.attribute_settings[{i}]", setting, order)
    weights = node.get("score_weights")
    if not isinstance(weights, DictConfig) or not weights:
        raise ChipadaptError("bootstrap.score_weights: expected a mapping of attribute: weight, e.g. {quality: 1.0}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ChipadaptError(f"bootstrap.score_weights.{name}: {weight!r} is not a number")


def steering_names(cfg: DictConfig) -> list[str] | None:
    """The attribute names bootstrap's settings are checked against: the order the SteerLM model at
    `model.path` records it was trained with (what bootstrap samples with), else data.attributes.order
    (a model saved before the record was, or one not yet materialised from `model.source`)."""
    path = OmegaConf.select(cfg, "model.path", default=None)
    recorded = recorded_attribute_order(Path(str(path)).expanduser()) if path else None
    if recorded is not None:
        return recorded
    order = OmegaConf.select(cfg, "data.attributes.order")
    return list(order) if isinstance(order, ListConfig) else None


def check_steerlm_stages(cfg: DictConfig) -> None:
    """stage=annotate's and stage=bootstrap's settings, where the composed config has them."""
    if isinstance(cfg.get("annotate"), DictConfig):
        _whole_numbers("annotate", cfg.annotate)
    if isinstance(cfg.get("bootstrap"), DictConfig):
        check_bootstrap(cfg.bootstrap, steering_names(cfg))
