"""The general model a reproduction starts from, as the report names it: the config's model name and
its parameter count, read from the weights' headers. Before, the report said "SmolLM2-135M-Instruct"
and "a 135M model" whatever `model` was (model=tiny: a random model of about 0.1M parameters)."""

import json
import struct
from pathlib import Path


def parameter_count(folder: Path) -> int | None:
    """Parameters in the folder's safetensors files (their headers only: no tensor is read); None
    without them (a folder of other files, or not there: a report built from records alone)."""
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


def size_text(count: int | None) -> str | None:
    """135M, 1.3B, 0.1M: as model sizes are said."""
    if count is None:
        return None
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e7 else f"{count / 1e6:.1g}M"


def sized_model(size: str | None) -> str:
    """ "a 135M model", for the sentences that explain a result by the model's size."""
    return f"a {size} model" if size else "a model this small"
