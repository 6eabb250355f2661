"""The weights of a Lightning checkpoint, read into the LightningModule that wrote it, on the CPU.

Three layouts reach here: one file (a single device, DDP, FSDP with `state_dict_type: full`), a
folder written by torch.distributed.checkpoint (FSDP's sharded checkpoints: the shards, `.metadata`
and Lightning's `meta.pt`), and DeepSpeed's folder, which only DeepSpeed's own script reassembles."""

import logging
from pathlib import Path

import torch

from chipadapt.errors import ChipadaptError

log = logging.getLogger(__name__)

# What FSDP may leave in a parameter's name when a wrapper sits inside the LightningModule.
WRAPPER_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def checkpoint_layout(path: Path, key: str) -> str:
    """`file`, `sharded` (torch.distributed.checkpoint) or a one-line error for anything else."""
    if path.is_file():
        return "file"
    if not path.is_dir():
        raise ChipadaptError(f"{key}: {path} does not exist")
    if (path / "latest").is_file() or (path / "checkpoint").is_dir():
        raise ChipadaptError(
            f"{key}: {path} is a DeepSpeed checkpoint, which export does not read: DeepSpeed's zero_to_fp32.py "
            "(beside its shards) reassembles the weights into one file"
        )
    if (path / "meta.pt").is_file() and (path / ".metadata").is_file():
        return "sharded"
    raise ChipadaptError(
        f"{key}: {path} is a folder but no checkpoint (neither one file nor an FSDP sharded folder with meta.pt "
        "and .metadata)"
    )


def _load(path: Path, key: str) -> dict:
    try:
        # weights_only: tensors and plain containers, nothing that runs code; mmap: read as used.
        content = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever unpickling raises, the user gets one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ChipadaptError(f"{key}: {path} cannot be read as a checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(content, dict):
        raise ChipadaptError(f"{key}: {path} is not a Lightning checkpoint (no dictionary inside)")
    return content


def checkpoint_metadata(path: Path, key: str) -> dict:
    """What a checkpoint holds besides its weights (global_step, epoch, ...); tensors are mapped, not read."""
    content = _load(path / "meta.pt" if checkpoint_layout(path, key) == "sharded" else path, key)
    if not isinstance(content.get("global_step"), int):
        raise ChipadaptError(f"{key}: {path} is not a Lightning checkpoint (no global_step)")
    return content


def load_module_weights(module: torch.nn.Module, path: Path, key: str) -> dict:
    """Fill `module` (built as its run built it) with the checkpoint's weights; returns the checkpoint's
    metadata. A checkpoint whose names or shapes are not the module's is a one-line error."""
    layout = checkpoint_layout(path, key)
    if layout == "sharded":
        return _load_sharded(module, path, key)
    checkpoint = checkpoint_metadata(path, key)
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise ChipadaptError(f"{key}: {path} holds no state_dict")
    if hasattr(module, "restore_frozen_weights"):  # LoRA checkpoints leave the frozen base out
        module.restore_frozen_weights(checkpoint)
        state = checkpoint["state_dict"]
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ChipadaptError(f"{key}: {path} does not fit the run's model ({_first_problem(err)})") from None
    return checkpoint


def _load_sharded(module: torch.nn.Module, path: Path, key: str) -> dict:
    """Lightning saves FSDP's sharded state as {"model": ..., "optimizer_0": ...}: only "model" is read,
    straight into the module's own tensors (no second copy, no optimizer state in memory)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    checkpoint = checkpoint_metadata(path, key)
    stored = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    names = {name.removeprefix("model.") for name in stored if name.startswith("model.")}
    state = module.state_dict()
    plain = {_unwrapped(name): name for name in names}
    missing = sorted(name for name in state if name not in plain)
    if missing or not names:
        raise ChipadaptError(
            f"{key}: {path}: a sharded checkpoint whose weights are not this run's model "
            f"({len(missing)} of its {len(state)} tensors not found, e.g. {missing[:1] or 'none stored'}); "
            "torch.distributed.checkpoint.format_utils.dcp_to_torch_save turns it into one file to inspect"
        )
    # Names as stored (a wrapper's part may be left in them), the module's own tensors as destinations.
    target = {"model": {plain[name]: tensor for name, tensor in state.items()}}
    log.info("reading the sharded checkpoint %s", path)
    try:
        dcp.load(target, checkpoint_id=str(path), no_dist=True)
    except Exception as err:  # noqa: BLE001 - torch's CheckpointException wraps each rank's error
        raise ChipadaptError(f"{key}: {path} cannot be read ({type(err).__name__}: {_first_line(err)})") from None
    return checkpoint


def _unwrapped(name: str) -> str:
    for part in WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _first_problem(err: RuntimeError) -> str:
    """torch's load_state_dict message is many lines; its first missing/unexpected/size entry is enough."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = next((line for line in lines[1:]), lines[0] if lines else "")
    # `Missing key(s) in state_dict: "a", "b", ...` names every key, hundreds for a model of another
    # run: the first and how many more say it.
    head, colon, keys = detail.partition(": ")
    names = [name.strip().strip('"') for name in keys.rstrip(".").split(", ")] if colon else []
    if " key(s) in state_dict" in head and len(names) > 1:
        return f'{head}: "{names[0]}" and {len(names) - 1} more'
    return detail[:300]
