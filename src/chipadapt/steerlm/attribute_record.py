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
  `Attributes: quality:4` system line of the model's own template."""

import json
from pathlib import Path

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
