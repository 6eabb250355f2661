"""LoRA under FSDP: each adapter matrix its own FSDP unit, apart from the frozen weights it adapts.

FSDP flattens the parameters of a unit (a decoder layer, the root's embeddings and head) into one
tensor, of one dtype. Under LoRA the frozen base is in `model.dtype` (bf16 at 7B-70B) and the
adapters train in float32, so a decoder layer holding both cannot be flattened ("Must flatten
tensors with uniform dtype"); in float32 it can, but its gradient then spans the frozen weights too
(torch warns of the memory). The standard answer, peft's and accelerate's auto-wrap policy for
PEFT models, is the one taken here: every leaf module whose own parameters all train (lora_A,
lora_B) becomes a unit of its own, nested in its decoder layer's, which then holds frozen weights
alone. A model that trains every weight keeps the configured policy (one unit per decoder layer):
wrapping each of its Linear layers apart would make hundreds of small all-gathers a layer."""

from collections.abc import Callable

from torch import nn

from chipadapt.errors import ChipadaptError


class AdapterUnits:
    """For Lightning's FSDPStrategy given its decoder layer classes as a set (`auto_wrap_policy`)."""

    def __init__(self, *args, auto_wrap_policy=None, **kwargs):
        super().__init__(*args, auto_wrap_policy=auto_wrap_policy, **kwargs)
        self.layer_classes = tuple(auto_wrap_policy) if isinstance(auto_wrap_policy, set) else ()

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import CustomPolicy

        wrapped = any(isinstance(m, FullyShardedDataParallel) for m in model.modules())
        if self.layer_classes and not wrapped and partly_frozen(model):
            layers = self.layer_classes

            def is_unit(module: nn.Module) -> bool:
                return isinstance(module, layers) or trains_alone(module)

            refuse_mixed_dtype_units(model, is_unit)
            self.kwargs["auto_wrap_policy"] = CustomPolicy(is_unit)
        return super()._setup_model(model)


def partly_frozen(model: nn.Module) -> bool:
    """Some weights train and some do not: a PEFT model (meta tensors answer this too)."""
    trains = {p.requires_grad for p in model.parameters()}
    return trains == {True, False}


def trains_alone(module: nn.Module) -> bool:
    """A leaf module called in the forward pass (it has a `weight`: Linear, Embedding) whose own
    parameters all train, as LoRA's lora_A and lora_B. peft's delta of new token rows is a
    ParameterDict, never called: as a unit of its own FSDP would never gather it, so it is left to
    the unit around it."""
    if next(module.children(), None) is not None or not isinstance(getattr(module, "weight", None), nn.Parameter):
        return False
    return all(p.requires_grad for p in module.parameters(recurse=False))


def refuse_mixed_dtype_units(model: nn.Module, is_unit: Callable[[nn.Module], bool]) -> None:
    """One line, before FSDP's traceback, when a unit would still mix dtypes: a float32 parameter
    that trains beside frozen bf16 weights outside any adapter (an augmented tokenizer's new rows,
    peft's `trainable_token_indices`, live in the root unit with the frozen embedding)."""
    units: dict[str, dict] = {}

    def visit(module: nn.Module, path: str, unit: str) -> None:
        for name, param in module.named_parameters(recurse=False):
            units.setdefault(unit, {}).setdefault(param.dtype, f"{path}.{name}".lstrip("."))
        for name, child in module.named_children():
            child_path = f"{path}.{name}".lstrip(".")
            visit(child, child_path, child_path if is_unit(child) else unit)

    visit(model, "", "")
    for unit, dtypes in units.items():
        if len(dtypes) > 1:
            found = ", ".join(f"{name} in {str(dtype).removeprefix('torch.')}" for dtype, name in dtypes.items())
            raise ChipadaptError(
                f"model.dtype: under trainer=fsdp the weights of one shard unit ({unit or 'the model root'}) must "
                f"share a dtype, and here they do not ({found}): trained weights outside LoRA's adapters (an "
                "augmented tokenizer's new embedding rows) are float32 beside the frozen base; set "
                "model.dtype=float32, or peft.train_new_token_rows=false"
            )
