"""Streaming access to safetensors model folders: read one tensor at a time, write shards as they fill."""

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from chipadapt.errors import ChipadaptError

# Tied models store only the input embedding; the output embedding is the same tensor.
TIED_ALIASES = {"lm_head.weight": "model.embed_tokens.weight"}
EMBEDDING_MARKERS = ("embed_tokens", "lm_head", "wte", "word_embeddings", "embed_out")


class SafetensorsModel:
    """A Hugging Face folder's tensors, opened lazily (memory-mapped), never all loaded."""

    def __init__(self, folder: str, key: str):
        self.folder = Path(folder).expanduser()
        self.key = key
        config = self.folder / "config.json"
        if not config.is_file():
            raise ChipadaptError(f"{key}: {self.folder} is not a Hugging Face model folder (no config.json)")
        self.config = json.loads(config.read_text())
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            self.files = {name: self.folder / f for name, f in json.loads(index.read_text())["weight_map"].items()}
        elif (self.folder / "model.safetensors").is_file():
            with safe_open(self.folder / "model.safetensors", "pt") as handle:
                self.files = {name: self.folder / "model.safetensors" for name in handle.keys()}
        else:
            raise ChipadaptError(f"{key}: {self.folder} has no safetensors weights (pickle checkpoints are not read)")
        self._handles: dict[Path, object] = {}

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def names(self) -> list[str]:
        return list(self.files)

    def has(self, name: str) -> bool:
        return name in self.files or (self.tied and TIED_ALIASES.get(name) in self.files)

    def get(self, name: str) -> torch.Tensor:
        if name not in self.files and self.tied and TIED_ALIASES.get(name) in self.files:
            name = TIED_ALIASES[name]
        if name not in self.files:
            raise ChipadaptError(f"tensor {name}: missing from {self.key} ({self.folder})")
        path = self.files[name]
        if path not in self._handles:
            self._handles[path] = safe_open(path, "pt")
        return self._handles[path].get_tensor(name)


class ShardWriter:
    """Writes tensors into safetensors shards of at most max_bytes, freeing each shard once written."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total_bytes += size

    def flush(self) -> None:
        if not self.pending:
            return
        path = self.folder / f".shard-{len(self.shards):05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.shards.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        self.flush()
        if len(self.shards) == 1:
            os.replace(self.shards[0][0], self.folder / "model.safetensors")
            return
        weight_map = {}
        for number, (path, names) in enumerate(self.shards, start=1):
            final = f"model-{number:05d}-of-{len(self.shards):05d}.safetensors"
            os.replace(path, self.folder / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
