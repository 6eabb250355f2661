"""Merge settings whose null stands for a value: `merge.out_dtype` (null writes each float tensor in the
chip model's dtype) and `merge.chat_template` (null takes the template merge.chat_template_from chooses
between the inputs: merge/chat_files.py). The mergekit_config.yml a merge writes names both values, so
`merge.py config=mergekit_config.yml` into the same folder set what the first run left null; compared as
written, the same merge was refused as "merged with other settings".

Where one side of a comparison leaves such a key null and the other sets it, the null is read as the
value it resolves to, from the current job's input models: a rerun is accepted only with the same inputs
(by content) too, so that is what the earlier run wrote. A null that resolves to nothing certain (a chip
model of mixed float dtypes, no input with a template, a model folder that cannot be read) stays null,
and so still differs from any value."""

from chipadapt.errors import ChipadaptError
from chipadapt.merge.chat_files import CHOICES, chat_template_of, choose
from chipadapt.merge.io import SafetensorsModel
from chipadapt.models.locate import locate_model
from chipadapt.run_settings import by_name, named_folders

OUT_DTYPE, CHAT_TEMPLATE, CHAT_TEMPLATE_FROM = "merge.out_dtype", "merge.chat_template", "merge.chat_template_from"
# config.json's dtype keys (transformers 5 and before): merge.out_dtype rewrites them, null keeps the chip's.
CONFIG_DTYPE_KEYS = ("dtype", "torch_dtype")


def with_nulls_resolved(before: dict, now: dict, recorded: dict, config: dict) -> tuple[dict, dict]:
    """Dotted settings `before` (of `recorded`) and `now` (of `config`, the current job's resolved
    config), with a null merge.out_dtype or merge.chat_template read as what it resolves to where the
    other side sets the key."""
    before, now = dict(before), dict(now)
    resolvers = {OUT_DTYPE: _written_dtype, CHAT_TEMPLATE: _taken_template}
    for key, resolve in resolvers.items():
        if (before.get(key) is None) == (now.get(key) is None):
            continue
        side, source = (before, recorded) if before.get(key) is None else (now, config)
        value = resolve(config.get("models") or {}, side)
        if value is not None:
            side[key] = by_name(value, named_folders(source.get("paths")))
    return before, now


def _written_dtype(models: dict, settings: dict) -> str | None:
    """The dtype a null merge.out_dtype writes: that of every float tensor of the chip model, where they
    share one and its config.json says the same (merge.out_dtype would rewrite a different one)."""
    try:
        chip = SafetensorsModel(models.get("chip"), "models.chip")
    except (ChipadaptError, OSError, TypeError):
        return None
    dtypes = {chip.dtype(name) for name in chip.names() if chip.dtype(name).is_floating_point}
    if len(dtypes) != 1:
        return None
    name = str(dtypes.pop()).removeprefix("torch.")
    if any(chip.config.get(key, name) != name for key in CONFIG_DTYPE_KEYS):
        return None
    return name


def _taken_template(models: dict, settings: dict):
    """The template a null merge.chat_template takes: the chip's or the instruct model's, as
    merge.chat_template_from chooses (chat_files.take_chat_files); None where neither has one (the
    output then carries whatever the tokenizer's donor has)."""
    prefer = settings.get(CHAT_TEMPLATE_FROM)
    if prefer not in CHOICES:
        return None  # refused by the merge itself
    templates = {}
    for key in ("chip", "instruct"):
        try:
            templates[f"models.{key}"] = chat_template_of(locate_model(models.get(key), f"models.{key}"))
        except (ChipadaptError, OSError, TypeError):
            return None
    taken, _ = choose(templates, prefer)
    return None if taken is None else templates[taken]
