"""Lightning strategies whose Python-only arguments (layer classes) are named in config."""

import importlib

from chipadapt.errors import ChipadaptError


def _layer_classes(names: list[str]) -> set[type]:
    """`LlamaDecoderLayer` -> the class, looked up in transformers' model packages."""
    import transformers

    found = set()
    for name in names:
        cls = getattr(transformers, name, None)
        if cls is None:
            model_type = name.removesuffix("DecoderLayer").lower()
            try:
                module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
                cls = getattr(module, name, None)
            except ImportError:
                cls = None
        if cls is None:
            raise ChipadaptError(f"trainer.strategy.layer_classes: {name!r} is not a transformers decoder layer class")
        found.add(cls)
    return found


def fsdp_strategy(
    layer_classes: list[str],
    sharding_strategy: str,
    activation_checkpointing: bool,
    cpu_offload: bool,
    state_dict_type: str,
    load_on_rank0: bool,
    limit_all_gathers: bool = True,
):
    """FSDP wrapping each decoder layer (full shard by default), optional activation checkpointing of
    the same layers, sharded checkpoints (each rank writes its shard: fast resume at 70B), each
    replaced whole (scaleout/whole_checkpoints.py); with `load_on_rank0`, global rank 0 alone reads
    the weights and FSDP broadcasts them as it shards (scaleout/rank0_load.py)."""
    from chipadapt.scaleout.whole_checkpoints import WholeCheckpointFSDP

    layers = _layer_classes(layer_classes)
    return WholeCheckpointFSDP(
        auto_wrap_policy=layers,
        activation_checkpointing_policy=layers if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        cpu_offload=cpu_offload,
        state_dict_type=state_dict_type,
        load_on_rank0=load_on_rank0,
        limit_all_gathers=limit_all_gathers,
    )


def deepspeed_strategy(stage: int, offload_optimizer: bool, offload_parameters: bool):
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ChipadaptError("trainer=deepspeed_*: DeepSpeed is not installed (pip install '.[gpu]')") from None
    from chipadapt.scaleout.whole_checkpoints import WholeCheckpointDeepSpeed

    return WholeCheckpointDeepSpeed(
        stage=stage, offload_optimizer=offload_optimizer, offload_parameters=offload_parameters
    )
