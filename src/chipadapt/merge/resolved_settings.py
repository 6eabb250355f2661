"""Merge settings whose null stands for a value: `merge.out_dtype` (null writes each float tensor in the
chip model's dtype for that tensor) and `merge.chat_template` (null takes the template
merge.chat_template_from chooses between the inputs: merge/chat_files.py). The mergekit_config.yml a
merge writes names both values, so `merge.py config=mergekit_config.yml` into the same folder set what
the first run left null; compared as written, the same merge was refused as "merged with other settings".
A null out_dtype that no one dtype stands for (a chip model whose norms are float32 beside bfloat16
weights, or whose config.json names another dtype than its tensors': merge/dtypes.py written_dtype) is
exported as null, and a change from or to it is named with the reason (null_out_dtype_reason).

Where one side of a comparison leaves such a key null and the other sets it, the null is read as the
value it resolves to, from the current job's input models: a rerun is accepted only with the same inputs
(by content) too, so that is what the earlier run wrote. A null that resolves to nothing certain (a chip
model of mixed float dtypes, no input with a template, a model folder that cannot be read) stays null,
and so still differs from any value.

`merge.chat_template=auto` that found a tie is exported as the text of the template it took (mergekit
breaks ties in hash order: merge/mergekit_export.py); where one side says `auto` and the other a template,
`auto` is read as the template it takes when the merge would write the same files with either: that
template, and the generation_config.json that goes with it (under `auto` an input holding the template
gives it; under a given template, merge.chat_template_from chooses, as without the key).

Only model folders on this machine are read: a comparison also runs in a sweep's preflight, before any
job, where a hub id would be downloaded and a .gguf converted; such an input leaves the value unresolved."""

from pathlib import Path
from types import SimpleNamespace

from chipadapt.errors import ChipadaptError
from chipadapt.merge.chat_files import (
    AUTO,
    CHOICES,
    GENERATION_CONFIG,
    _comparable,
    chat_template_of,
    choose,
    generation_config_of,
    most_common_template,
)
from chipadapt.merge.dtypes import no_out_dtype_reason, written_dtype
from chipadapt.merge.io import SafetensorsModel
from chipadapt.run_settings import by_name, named_folders

OUT_DTYPE, CHAT_TEMPLATE, CHAT_TEMPLATE_FROM = "merge.out_dtype", "merge.chat_template", "merge.chat_template_from"
# What reading an input's files can raise: a folder gone or unreadable, a JSON file not JSON, a
# chat_template.jinja not UTF-8, a value of the wrong type. Any of them leaves the setting unresolved.
UNREADABLE = (ChipadaptError, OSError, UnicodeDecodeError, TypeError, ValueError)


def with_nulls_resolved(before: dict, now: dict, recorded: dict, config: dict) -> tuple[dict, dict]:
    """Dotted settings `before` (of `recorded`) and `now` (of `config`, the current job's resolved
    config), with a null merge.out_dtype or merge.chat_template read as what it resolves to where the
    other side sets the key, and a merge.chat_template `auto` as the template it takes where the other
    side gives that template and the merge would write the same files."""
    before, now = dict(before), dict(now)
    models = _local_folders(config)
    resolvers = {OUT_DTYPE: _written_dtype, CHAT_TEMPLATE: _taken_template}
    for key, resolve in resolvers.items():
        if (before.get(key) is None) == (now.get(key) is None):
            continue
        side, source = (before, recorded) if before.get(key) is None else (now, config)
        value = resolve(models, side)
        if value is not None:
            side[key] = by_name(value, named_folders(source.get("paths")))
    _resolve_auto(before, now, recorded, config, models)
    return before, now


def _local_folders(config: dict) -> dict[str, Path | None]:
    """{chip, instruct, base: its folder} for the inputs the merge reads that are folders on this machine;
    None for one that is not (a hub id, a .gguf file); base left out where none is given or the method
    reads none."""
    models = config.get("models")
    models = models if isinstance(models, dict) else {}
    folders = {}
    for key in ("chip", "instruct", "base"):
        path = Path(str(models[key])).expanduser() if models.get(key) else None
        folders[key] = path if path is not None and path.is_dir() else None
    reads_base = _reads_base(config) if models.get("base") else False
    if reads_base is None:
        folders["base"] = None  # a method the merge itself refuses: nothing certain to resolve
    elif not reads_base:
        del folders["base"]  # none given, or one the method never reads: no input of `auto` either
    return folders


def _reads_base(config: dict) -> bool | None:
    """Whether merge.method reads models.base (merge/merged_folder.py models_read), by its class."""
    from hydra.utils import get_class

    try:
        return bool(getattr(get_class(config["merge"]["method"]["_target_"]), "needs_base", False))
    except Exception:  # noqa: BLE001 (a method the merge itself refuses: None, left unresolved)
        return None


def _written_dtype(models: dict, settings: dict) -> str | None:
    """The dtype a null merge.out_dtype writes (merge/dtypes.py written_dtype), of the chip model's folder."""
    chip = _chip_model(models)
    return None if chip is None else written_dtype(chip)


def null_out_dtype_reason(config: dict) -> str | None:
    """Why no merge.out_dtype stands for a null one with `config`'s chip model (merge/dtypes.py
    no_out_dtype_reason); None where one does or the chip model is not a readable folder here."""
    chip = _chip_model(_local_folders(config))
    return None if chip is None else no_out_dtype_reason(chip)


def _chip_model(models: dict) -> SafetensorsModel | None:
    if models.get("chip") is None:
        return None
    try:
        return SafetensorsModel(str(models["chip"]), "models.chip")
    except UNREADABLE:
        return None


def _taken_template(models: dict, settings: dict):
    """The template a null merge.chat_template takes: the chip's or the instruct model's, as
    merge.chat_template_from chooses (chat_files.take_chat_files); None where neither has one (the
    output then carries whatever the tokenizer's donor has)."""
    prefer = settings.get(CHAT_TEMPLATE_FROM)
    if prefer not in CHOICES or models.get("chip") is None or models.get("instruct") is None:
        return None  # refused by the merge itself, or an input not on this machine
    try:
        templates = {f"models.{key}": chat_template_of(models[key]) for key in ("chip", "instruct")}
    except UNREADABLE:
        return None
    taken, _ = choose(templates, prefer)
    return None if taken is None else templates[taken]


def _resolve_auto(before: dict, now: dict, recorded: dict, config: dict, models: dict) -> None:
    """Where one side's merge.chat_template is `auto` and the other's a template: the `auto` read as that
    template, if it is the one `auto` takes and the generation_config.json written is the same."""
    values = before.get(CHAT_TEMPLATE), now.get(CHAT_TEMPLATE)
    if (values[0] == AUTO) == (values[1] == AUTO) or None in values:
        return
    (side, source), other = ((before, recorded), now) if values[0] == AUTO else ((now, config), before)
    if None in models.values():
        return  # an input not on this machine (or base of an unknown method): not read here
    try:
        taken = _auto_taken(models, side.get(CHAT_TEMPLATE_FROM))
        given = _generation_config_bytes(models, _given_config_from(models, other.get(CHAT_TEMPLATE_FROM)))
    except UNREADABLE:
        return
    if taken is None:
        return
    template, config_from = taken
    template = by_name(template, named_folders(source.get("paths")))
    if template == other[CHAT_TEMPLATE] and _generation_config_bytes(models, config_from) == given:
        side[CHAT_TEMPLATE] = template


def _auto_taken(models: dict, prefer) -> tuple[str, str | None] | None:
    """(the template merge.chat_template=auto writes, the input its generation_config.json is copied
    from) as chat_files.take_chat_files chooses them; None where `auto` takes no template (no input has one,
    or the one most have is a set of named templates) or merge.chat_template_from is refused."""
    if prefer not in CHOICES:
        return None
    inputs = [SimpleNamespace(key=f"models.{key}", folder=folder) for key, folder in models.items()]
    voted, _, _ = most_common_template(inputs)
    if not isinstance(voted, str):
        return None
    carriers = [m.key for m in inputs if _comparable(chat_template_of(m.folder)) == voted]
    if f"models.{prefer}" in carriers:  # chat_template_from names the one it is taken from
        carriers.remove(f"models.{prefer}")
        carriers.insert(0, f"models.{prefer}")
    with_config = [key for key in carriers if generation_config_of(_folder(models, key)) is not None]
    return voted, with_config[0] if with_config else _given_config_from(models, prefer)


def _given_config_from(models: dict, prefer) -> str | None:
    """The input generation_config.json is copied from with a template given (or no `auto` template):
    merge.chat_template_from's choice between chip and instruct."""
    if prefer not in CHOICES:
        raise ValueError(f"merge.chat_template_from={prefer!r}")  # refused by the merge itself
    configs = {f"models.{key}": generation_config_of(models[key]) for key in ("chip", "instruct")}
    return choose(configs, prefer)[0]


def _generation_config_bytes(models: dict, key: str | None) -> bytes | None:
    """The generation_config.json the output gets from input `key` (None: none copied, the tokenizer
    donor's stays, the same whatever the template setting)."""
    return None if key is None else (_folder(models, key) / GENERATION_CONFIG).read_bytes()


def _folder(models: dict, key: str) -> Path:
    return models[key.removeprefix("models.")]
