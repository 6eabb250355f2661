"""The SteerLM record of a merged model: the attribute order and template a SteerLM input records in its
config.json (steerlm/attribute_record.py), which evaluate.py and chat.py read to write the attribute
string the model was trained on. Without it, `generate.attributes` is refused and the model is scored
unsteered; a merge of a SteerLM chip model (ChipNeMo's case) lost it where only the instruct model's
config was read, and kept the chip model's even at lam=0, where no chip weight is in the output.

The record is carried where the merged weights hold a SteerLM model's: both inputs record the same one,
or one input records it and carries weight in the merge (the chip model at a lam above 0 on some tensor,
the instruct model below 1). Where both record different ones, neither is carried: either would claim
a format the other half of the weights was never trained on."""

import logging

from chipadapt.steerlm.attribute_record import ORDER_KEY, TEMPLATE_KEY

log = logging.getLogger(__name__)
KEYS = (ORDER_KEY, TEMPLATE_KEY)


def record_of(config: dict) -> dict | None:
    """The SteerLM keys a config.json holds; None where it records no attribute order."""
    if not isinstance(config.get(ORDER_KEY), list):
        return None
    return {key: config[key] for key in KEYS if key in config}


def carried_record(chip, instruct, lams: list[float]) -> tuple[dict | None, dict]:
    """(the record the merged config.json carries or None, {from, why} for the manifest). `lams`: the
    chip model's weight of each tensor merged (1 - lam is the instruct model's)."""
    records = {m.key: record_of(m.config) for m in (chip, instruct)}
    present = {key: record for key, record in records.items() if record is not None}
    if not present:
        return None, {"from": None, "why": "neither input records one"}
    weighted = {"models.chip": any(lam > 0 for lam in lams), "models.instruct": any(lam < 1 for lam in lams)}
    if len(present) == 2:
        if records["models.chip"] == records["models.instruct"]:
            chosen = {"from": "models.chip", "why": "both inputs record the same one"}
        else:
            chosen = {"from": None, "why": "the inputs record different ones (attribute order or template)"}
    else:
        (key,) = present
        if weighted[key]:
            chosen = {"from": key, "why": f"only {key} records one, and its weights are merged in"}
        else:
            chosen = {"from": None, "why": f"only {key} records one, and none of its weights are in the merge"}
    record = present[chosen["from"]] if chosen["from"] else None
    if record is not None:
        log.info(
            "merge: SteerLM attribute order %s from %s (%s): generate.attributes steers the merged model",
            record[ORDER_KEY],
            chosen["from"],
            chosen["why"],
        )
    else:
        log.warning(
            "merge: the SteerLM record (%s) is not carried into the merged model: %s; generate.attributes is "
            "refused for it and it is evaluated unsteered",
            ORDER_KEY,
            chosen["why"],
        )
    return record, chosen


def with_record(config: dict, record: dict | None) -> dict:
    """`config` (the chip model's, as the output's) with `record` as its SteerLM keys, none where None."""
    kept = {key: value for key, value in config.items() if key not in KEYS}
    return {**kept, **(record or {})}
