"""Streaming access to safetensors model folders: a block of rows at a time (see safetensors_stream)."""

import torch

from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import json_object
from chipadapt.merge.safetensors_stream import SafetensorsReader
from chipadapt.models.locate import locate_model

# Tied models store only the input embedding; the output embedding is the same tensor.
TIED_ALIASES = {"lm_head.weight": "model.embed_tokens.weight"}
EMBEDDING_MARKERS = ("embed_tokens", "lm_head", "wte", "word_embeddings", "embed_out")


class SafetensorsModel:
    """A Hugging Face folder's tensors, read a block of rows at a time with plain file reads."""

    def __init__(self, folder: str, key: str):
        self.folder = locate_model(folder, key)  # a folder, a .gguf file or a hub id in the HF cache
        self.key = key
        config = self.folder / "config.json"
        if not config.is_file():
            raise ChipadaptError(f"{key}: {self.folder} is not a Hugging Face model folder (no config.json)")
        self.config = json_object(config, key)
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json_object(index, key).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ChipadaptError(f"{key}: {index} has no weight_map")
            files = sorted({self.folder / f for f in weight_map.values()})
        elif (self.folder / "model.safetensors").is_file():
            files = [self.folder / "model.safetensors"]
        else:
            raise ChipadaptError(f"{key}: {self.folder} has no safetensors weights (pickle checkpoints are not read)")
        self.readers: dict[str, SafetensorsReader] = {}
        for path in files:
            reader = SafetensorsReader(path)
            self.readers.update({name: reader for name in reader.header})
        self.files = {name: reader.path for name, reader in self.readers.items()}

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def names(self) -> list[str]:
        return list(self.readers)

    def has(self, name: str) -> bool:
        return name in self.readers or (self.tied and TIED_ALIASES.get(name) in self.readers)

    def _stored(self, name: str) -> str:
        if name not in self.readers and self.tied and TIED_ALIASES.get(name) in self.readers:
            name = TIED_ALIASES[name]
        if name not in self.readers:
            raise ChipadaptError(f"tensor {name}: missing from {self.key} ({self.folder})")
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        stored = self._stored(name)
        return self.readers[stored].shape(stored)

    def dtype(self, name: str) -> torch.dtype:
        stored = self._stored(name)
        return self.readers[stored].dtype(stored)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop of a tensor, read from disk without loading the rest."""
        stored = self._stored(name)
        return self.readers[stored].rows(stored, start, stop)

    def get(self, name: str) -> torch.Tensor:
        shape = self.shape(name)
        return self.rows(name, 0, shape[0] if shape else 1)
