"""SteerLM attributes as a user gives them (chat.py's `/attributes quality:4,humor:0`, evaluate.py's and
chat.py's generate.attributes), parsed into names and values, and a note on those a SteerLM model never
saw in training (a misspelt name, a value off the labels' scale). Below chat.py and eval/steering.py,
which both read them."""

from chipadapt.errors import ChipadaptError


def parse_attributes(text: str) -> dict[str, float]:
    """`quality:4,humor:0` -> {"quality": 4.0, "humor": 0.0}; a bad item names itself."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition(":")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ChipadaptError(f"attributes: {item!r} is not name:value (e.g. quality:4,humor:0)") from None
        if not sep:
            raise ChipadaptError(f"attributes: {item!r} is not name:value (e.g. quality:4,humor:0)")
    return out


# The scale of SteerLM's labels here (OASST's steerlm_attributes, HelpSteer, the attribute model's ratings).
ATTRIBUTE_SCALE = (0.0, 4.0)


def unfamiliar_attributes(attributes: dict[str, float], order: list[str]) -> str:
    """A note on names outside `attribute_order` (a typo: `helpfullness`) and values off the 0-4 scale:
    the model saw neither in training, so they would steer nothing. Empty when all are familiar."""
    low, high = ATTRIBUTE_SCALE
    notes = [f"{k} is not one of attribute_order ({', '.join(order)})" for k in attributes if k not in order]
    notes += [f"{k}:{v:g} is off the {low:g}-{high:g} scale" for k, v in attributes.items() if not low <= v <= high]
    return "; ".join(notes)
