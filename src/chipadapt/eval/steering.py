"""evaluate.py's `generate.attributes`: the attribute string its generation tasks prompt a SteerLM model
with (as chat.py's generate.attributes does), written in the template and attribute order the model's
folder records (steerlm/attribute_record.py). evaluate.py had no way to give one: a SteerLM model was
scored unsteered, with nothing saying so. A folder that records an attribute order while no attributes
are given is warned about once. The string and template join the finished-task keys, so a task scored
under other attributes is not kept, and each task's results record the string (`steerlm_attributes`)."""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.chat_attributes import parse_attributes, unfamiliar_attributes
from chipadapt.data.chat_templates import attribute_string
from chipadapt.errors import ChipadaptError
from chipadapt.models.text_generation import STEERING
from chipadapt.steerlm.attribute_record import ORDER_KEY, TEMPLATE_KEY, recorded_attribute_order, recorded_template

log = logging.getLogger(__name__)
KEY = "generate.attributes"


def start_steering(cfg: DictConfig, folder: Path) -> str | None:
    """Set the steering of this evaluation's generation for the model in `folder`; its attribute string."""
    text = OmegaConf.select(cfg, KEY, default=None)
    order = recorded_attribute_order(folder)
    STEERING.set(None)  # not the last job's of a sweep run in this process
    if not text:
        if order is not None:
            log.warning(
                "%s/config.json records %s (a SteerLM model) but %s is not set: generation tasks prompt it without "
                "attributes (e.g. %s='quality:4,helpfulness:4,humor:0')",
                folder,
                ORDER_KEY,
                KEY,
                KEY,
            )
        return None
    template = recorded_template(folder)
    if order is None or template is None:
        raise ChipadaptError(
            f"{KEY}: {folder}/config.json records no {ORDER_KEY} and {TEMPLATE_KEY} (not a SteerLM model, or one "
            "saved before they were recorded), so the attributes' format is unknown"
        )
    attributes = parse_attributes(str(text))
    if note := unfamiliar_attributes(attributes, order):
        log.warning("%s: %s; a SteerLM model has never seen it", KEY, note)
    string = attribute_string(attributes, order)
    STEERING.set((template, string))
    return string


def steering_record() -> dict:
    """What the finished-task keys and results hold of the steering (empty without one)."""
    steering = STEERING.get()
    return {} if steering is None else {"steerlm_attributes": steering[1], "steerlm_template": steering[0]}
