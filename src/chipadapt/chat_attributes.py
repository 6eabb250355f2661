"""chat.py's SteerLM attributes as a user types them: the parsing lives in steerlm/attribute_values.py, below
chat.py and evaluate.py's steering alike; kept here under its earlier name for chat.py's modules."""

from chipadapt.steerlm.attribute_values import ATTRIBUTE_SCALE, parse_attributes, unfamiliar_attributes

__all__ = ["ATTRIBUTE_SCALE", "parse_attributes", "unfamiliar_attributes"]
