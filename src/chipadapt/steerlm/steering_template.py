"""The chat template a SteerLM model is prompted in: the one its training rendered its attribute strings
in, as its folder records it (`steerlm_template`, steerlm/attribute_record.py).

A model trained with data/template=chipnemo learned its attributes as a `<extra_id_2>quality:4,humor:0`
line after the assistant header; chat.py's default template (`model`) and bootstrap's (data.template's
default) wrote them as an `Attributes: ...` system line, a prompt it never saw, and nothing said so. The
recorded template is now the default. What is done with one named explicitly that differs:
- chat.py (`data/template@template=...` on the command line): refused in one line. chat's template has
  no other use, so a different one can only be a mistake, and its replies would look plausible.
- bootstrap: warned, and the model's own template is used to sample. `data.template` there is also the
  attribute model's template (its ratings), which may rightly differ from the SteerLM model's."""

import logging
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.steerlm.attribute_record import TEMPLATE_KEY, recorded_template

log = logging.getLogger(__name__)


def describe(template: dict) -> str:
    kind = str(template.get("_target_", "?")).rsplit(".", 1)[-1]
    if "attribute_line" in template:
        return f"{kind} (attributes as {template['attribute_line']!r})"
    return f"{kind} (attributes as {template.get('attribute_prefix', '')!r}... in the system turn)"


def named_on_command_line(*keys: str) -> bool:
    """Whether an override of this run names one of `keys` (a config group such as `data/template`, or a
    key under it): Hydra composes the group's default otherwise."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    for override in HydraConfig.get().overrides.task:
        name = override.split("=", 1)[0].lstrip("+~")
        if any(name == key or name.startswith((f"{key}.", f"{key}@")) for key in keys):
            return True
    return False


def steering_template(configured: dict, folder: Path, key: str, explicit: bool, refuse: bool) -> dict:
    """The template config to prompt the SteerLM model in `folder` with. `configured`: `key`'s resolved
    config; `explicit`: the user named it; `refuse`: an explicit one that differs is an error (else a
    warning, and the recorded one is used)."""
    recorded = recorded_template(folder)
    if recorded is None or recorded == configured:
        return configured
    if not explicit:
        log.info("chat template from %s/config.json (%s): %s", folder, TEMPLATE_KEY, describe(recorded))
        return recorded
    if same_format(configured, recorded):  # e.g. another default system prompt, asked for by name
        return configured
    differs = (
        f"{key} is {describe(configured)}, but {folder}/config.json records that its training rendered the "
        f"attributes in {describe(recorded)} ({TEMPLATE_KEY})"
    )
    if refuse:
        raise ChipadaptError(f"{differs}: drop the override of {key} to prompt in the model's own template")
    log.warning("%s: generation uses the model's; %s still applies to the attribute model", differs, key)
    return recorded


def same_format(a: dict, b: dict) -> bool:
    """The same way of writing turns and attributes; the default system prompt aside, which a user may
    choose (chat.py's generate.system_prompt changes it too)."""
    return {k: v for k, v in a.items() if k != "default_system"} == {
        k: v for k, v in b.items() if k != "default_system"
    }
