"""Nested settings as dotted keys (`optim.scheduler._target_`): what a changed-settings message names."""


def flatten(tree: dict, prefix: str = ""):
    """(`a.b.c`, value) for each leaf of `tree`; an empty dict is a leaf."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
