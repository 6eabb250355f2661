"""Activation checkpointing switched on by a config key, with the key named when a model can't."""

from chipadapt.errors import ChipadaptError


def enable_activation_checkpointing(model, key: str) -> None:
    """Recompute each layer's activations in the backward pass. Some transformers classes don't
    support it (transformers raises a ValueError from deep inside); the user's fix is the key."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ChipadaptError(
            f"{key}=true: {type(model).__name__} does not support activation checkpointing; set it false"
        )
    model.activation_checkpointing_enable()
