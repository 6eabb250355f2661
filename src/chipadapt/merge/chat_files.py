"""How the merged model is prompted and when it stops: its chat template and generation_config.json.

The tokenizer files come whole from the input whose vocabulary the output carries (merge/vocabulary.py),
usually the chip model. A chip model trained by DAPT of a base model (ChipNeMo's case) has no chat
template, and its generation_config is the base model's; yet the merged model is there to follow
instructions as the instruct model does. So each of the two is taken from the model that has one, and
where both have one and they differ, from `merge.chat_template_from` (conf/merge.yaml: instruct|chip). The
vocabulary stays the one chosen for the rows; only the template (a tokenizer_config.json key or
chat_template.jinja) and generation_config.json are replaced.
"""

import json
import logging
import shutil
from pathlib import Path

from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)

CHOICES = ("instruct", "chip")
JINJA = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"
# Written by whichever transformers saved the folder: not a difference between two configs.
GENERATION_IGNORED = ("transformers_version", "_from_model_config")


def chat_template_of(folder: Path):
    """The folder's chat template as transformers reads it: chat_template.jinja first, else the
    tokenizer_config.json key (a string, or a list of named templates); None when it has none."""
    if (folder / JINJA).is_file():
        return (folder / JINJA).read_text(encoding="utf-8")
    config = _json(folder / TOKENIZER_CONFIG)
    return (config or {}).get("chat_template") or None


def generation_config_of(folder: Path) -> dict | None:
    config = _json(folder / GENERATION_CONFIG)
    return None if config is None else {k: v for k, v in config.items() if k not in GENERATION_IGNORED}


def choose(values: dict, prefer: str) -> tuple[str | None, str]:
    """(the model key to take a file from or None, why); `values`: its content by model key (chip, instruct)."""
    present = {key: value for key, value in values.items() if value is not None}
    if not present:
        return None, "neither input has one"
    if len(present) == 1:
        key = next(iter(present))
        return key, f"only {key} has one"
    if values["models.chip"] == values["models.instruct"]:
        return "models.chip", "the same in both inputs"
    return f"models.{prefer}", f"both inputs have one and they differ; merge.chat_template_from={prefer}"


def check_chat_template_from(prefer) -> None:
    if prefer not in CHOICES:
        raise ChipadaptError(f"merge.chat_template_from: {prefer!r} is not one of {', '.join(CHOICES)}")


def take_chat_files(tmp: Path, copied_from, chip, instruct, prefer: str) -> dict:
    """Replace the chat template and generation_config.json in the output being written (`tmp`, which
    holds the tokenizer files of `copied_from`) by the ones chosen; what was chosen, for the manifest."""
    check_chat_template_from(prefer)
    models = {m.key: m for m in (chip, instruct)}
    templates = {key: chat_template_of(m.folder) for key, m in models.items()}
    template_from, template_why = choose(templates, prefer)
    if template_from is not None and templates[template_from] != chat_template_of(copied_from.folder):
        _write_template(tmp, templates[template_from])
    elif template_from is None and chat_template_of(copied_from.folder) is not None:
        template_from = copied_from.key  # models.base's, which carries the vocabulary
    configs = {key: generation_config_of(m.folder) for key, m in models.items()}
    config_from, config_why = choose(configs, prefer)
    if config_from is not None and config_from != copied_from.key:
        shutil.copy2(models[config_from].folder / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
    elif config_from is None and (tmp / GENERATION_CONFIG).is_file():
        config_from = copied_from.key
    chosen = {
        "chat_template": {"from": template_from, "why": template_why},
        "generation_config": {"from": config_from, "why": config_why},
    }
    log.info(
        "merge: chat template from %s (%s); generation_config.json from %s (%s)",
        template_from or "no input",
        template_why,
        config_from or "no input",
        config_why,
    )
    return chosen


def _write_template(tmp: Path, template) -> None:
    """The template where transformers 5 reads it (chat_template.jinja; make_portable copies it into
    tokenizer_config.json for 4.x), or, for a list of named templates, in tokenizer_config.json."""
    config_path = tmp / TOKENIZER_CONFIG
    config = _json(config_path)
    (tmp / JINJA).unlink(missing_ok=True)
    if isinstance(template, str):
        (tmp / JINJA).write_text(template, encoding="utf-8")
        if config is None or "chat_template" not in config:
            return
        del config["chat_template"]  # the copied model's, which transformers 4.x would read
    else:
        config = {**(config or {}), "chat_template": template}
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ChipadaptError(f"{path}: not readable JSON ({err})") from None
    return value if isinstance(value, dict) else None
