"""Text OmegaConf reads back as written. A config value may hold `${` as text (a chat template in
merge.chat_template, a prompt); OmegaConf reads `${` as an interpolation wherever a resolved config is
made an OmegaConf config again: Lightning's hparams.yaml of the CSV and TensorBoard loggers (written
and read back through OmegaConf, loggers/hparams_file.py) and a Hydra override (merge/mergekit_config.py)."""

import re


def literal(text: str) -> str:
    """`text` with each `${` written `\\${` (a literal `${` to OmegaConf), the backslashes just before it
    doubled, as OmegaConf halves them there."""
    return re.sub(r"(\\*)\$\{", lambda m: m[1] * 2 + "\\${", text)


def literal_strings(value):
    """`value` (a resolved config: dicts, lists, scalars) with every string `literal`."""
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, dict):
        return {key: literal_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal_strings(item) for item in value]
    return value
