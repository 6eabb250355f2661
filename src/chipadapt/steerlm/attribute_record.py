"""What a SteerLM model folder records about its attributes, in its config.json, where it travels with
the weights through any `save_pretrained`:
- an attribute model: `id2label` names its heads in order, and `attribute_train_labels` counts the
  training conversations labelled with each ({name: n}). A head with no label never trained: its output
  is its initialisation, no rating, so annotate and bootstrap write null for it.
- a SteerLM model: `steerlm_attribute_order`, the order its attribute strings were written in
  (`data.attributes.order`); a generation that writes them in another order asks for something the
  model never saw; and `steerlm_template`, the chat template its training rendered them in
  (`data.template`, its resolved config): chat.py and bootstrap prompt with it by default
  (steerlm/steering_template.py), as ChipNeMo's `<extra_id_2>quality:4` line is not the
  `Attributes: quality:4` system line of the model's own template.
Attributes asked of a folder that records no such format are refused (recorded_format), by evaluate.py and
chat.py alike, in the same words."""

import json
from pathlib import Path

from chipadapt.errors import ChipadaptError

TRAIN_LABELS_KEY = "attribute_train_labels"
ORDER_KEY = "steerlm_attribute_order"
TEMPLATE_KEY = "steerlm_template"


def record_train_labels(config, counts: dict[str, int]) -> None:
    """Into an attribute model's config before it is saved."""
    setattr(config, TRAIN_LABELS_KEY, {name: int(n) for name, n in counts.items()})


def head_names(config) -> list[str]:
    labels = config.id2label
    return [labels[i] for i in range(len(labels))]


def untrained_heads(config) -> list[str] | None:
    """The attribute model's heads that no training label reached; None where the folder does not say
    (written before the record was)."""
    counts = getattr(config, TRAIN_LABELS_KEY, None)
    if not isinstance(counts, dict):
        return None
    return [name for name in head_names(config) if not counts.get(name)]


def record_attribute_order(config, order: list[str], template: dict | None = None) -> None:
    """Into a SteerLM model's config before it is saved; `template`: data.template as resolved."""
    setattr(config, ORDER_KEY, list(order))
    if isinstance(template, dict):
        setattr(config, TEMPLATE_KEY, dict(template))


def _recorded(folder: str | Path, key: str):
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def recorded_attribute_order(folder: str | Path) -> list[str] | None:
    """The attribute order a SteerLM model folder records; None where it records none."""
    order = _recorded(folder, ORDER_KEY)
    return [str(name) for name in order] if isinstance(order, list) else None


def recorded_template(folder: str | Path) -> dict | None:
    """The chat template config a SteerLM model folder records it was trained in; None where it records
    none (a model saved before the record was, or not a SteerLM model)."""
    template = _recorded(folder, TEMPLATE_KEY)
    return template if isinstance(template, dict) and "_target_" in template else None


def recorded_format(folder: Path, key: str) -> tuple[list[str], dict]:
    """The attribute order and template the SteerLM model in `folder` records; refused where it records
    neither or only one (`key` names the setting that asked for attributes: evaluate's, chat's)."""
    order, template = recorded_attribute_order(folder), recorded_template(folder)
    if order is None and _config_holds(folder, TEMPLATE_KEY):
        # Neither a model saved before the record nor one merge.py wrote: both write the order, the
        # template alone is a record cut short (by hand).
        raise ChipadaptError(
            f"{key}: {folder}/config.json records {TEMPLATE_KEY} but no {ORDER_KEY} (the order its attribute "
            f"strings were written in: add it, the data.attributes.order it was trained with, to its "
            f"config.json, or leave {key} unset), so the attributes' format is unknown"
        )
    if order is None or template is None:
        lacks = f"no {ORDER_KEY} and {TEMPLATE_KEY}" if order is None else f"{ORDER_KEY} but no {TEMPLATE_KEY}"
        raise ChipadaptError(
            f"{key}: {folder}/config.json records {lacks} ({_no_record_cause(folder, order is not None, key)}), "
            "so the attributes' format is unknown"
        )
    return order, template


def _config_holds(folder: Path, key: str) -> bool:
    """Whether the folder's config.json has `key` at all (recorded_template reads only a usable one)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get(key) is not None


def _no_record_cause(folder: Path, has_order: bool, key: str) -> str:
    """Why a folder records no SteerLM attribute format: merge.py's reason for a merged model (its
    merge_manifest.json), else what a plain folder lacking it is. `has_order`: the attribute order is
    recorded, the template is not (a SteerLM model saved before templates were recorded). `key`: the
    setting that asked for attributes, the one to leave unset."""
    add = f"add {TEMPLATE_KEY} (the data.template it was trained with, resolved) to"
    try:
        manifest = json.loads((Path(folder) / "merge_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        if has_order:
            return f"a SteerLM model saved before templates were recorded: {add} its config.json, or leave {key} unset"
        return "not a SteerLM model, or one saved before they were recorded"
    carried = (manifest.get("summary") or {}).get("steerlm_record") or {}
    if carried.get("from"):
        # The record was carried, but from an input saved before templates were recorded: `why` says why
        # it was carried, which is no cause of its lack.
        return (
            f"a merged model: the record merge.py carried from {carried['from']} has no {TEMPLATE_KEY}, as that "
            f"input was saved before SteerLM templates were recorded; {add} that input's config.json and merge "
            f"again, or leave {key} unset"
        )
    if carried.get("why"):
        return f"a merged model: merge.py did not carry its inputs' record, as {carried['why']}"
    inputs = ", ".join(f"{name}: {path}" for name, path in (manifest.get("inputs") or {}).items())
    return (
        "a merged model written before merge.py carried its inputs' SteerLM record; "
        f"merge again to carry it where an input records one ({inputs})"
    )
