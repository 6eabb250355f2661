"""Streaming access to safetensors model folders: a block of rows at a time (see safetensors_stream)."""

import logging

import torch

from chipadapt.errors import ChipadaptError
from chipadapt.io.jsonl import json_object
from chipadapt.merge.safetensors_stream import SafetensorsReader
from chipadapt.models.locate import locate_model
from chipadapt.models.whole_model_folder import require_config_json

log = logging.getLogger(__name__)

# Tied models store only the input embedding; the output embedding is the same tensor.
TIED_ALIASES = {"lm_head.weight": "model.embed_tokens.weight"}
EMBEDDING_MARKERS = ("embed_tokens", "lm_head", "wte", "word_embeddings", "embed_out")


class SafetensorsModel:
    """A Hugging Face folder's tensors, read a block of rows at a time with plain file reads."""

    def __init__(self, folder: str, key: str):
        self.folder = locate_model(folder, key)  # a folder, a .gguf file or a hub id in the HF cache
        self.key = key
        require_config_json(self.folder, key)
        self.config = json_object(self.folder / "config.json", key)
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

    def check_against_config(self) -> None:
        """Every tensor the architecture in config.json has is here, in its shape. Merging reads
        tensors by name from the files, so a tensor absent from every input would otherwise just be
        absent from the output, and a config.json of another size would be published with these
        weights (both load as random tensors). Tied and derived tensors (a tied lm_head, rotary
        buffers) are not stored and not asked for. The architecture is built on the meta device:
        no memory, whatever the model size."""
        from transformers import AutoConfig, AutoModelForCausalLM

        from chipadapt.models.safe_load import DERIVED

        try:
            config = AutoConfig.from_pretrained(self.folder, local_files_only=True, trust_remote_code=False)
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ChipadaptError(
                f"{self.key}: {self.folder / 'config.json'} does not describe a causal LM transformers can build: "
                + " ".join(str(err).split())
            ) from None
        if _renames_checkpoint_keys(model):
            # The checkpoint's names are not the module's (fused MoE experts, multimodal prefixes):
            # nothing to compare name by name; transformers checks these when the output loads.
            log.info(
                "%s: %s stores weights under converted names; not checked against its config", self.key, self.folder
            )
            return
        # As transformers ties them for this config (its class defaults included), not only as
        # config.json spells tie_word_embeddings.
        tied = set(getattr(model, "all_tied_weights_keys", None) or {})
        expected = {n: tuple(t.shape) for n, t in model.state_dict().items() if n not in tied and not DERIVED.search(n)}
        missing = [n for n in expected if not self.has(n)]
        if missing:
            shown = ", ".join(missing[:4]) + (f" (and {len(missing) - 4} more)" if len(missing) > 4 else "")
            raise ChipadaptError(
                f"{self.key}: {self.folder} lacks trained weights for {shown} (the architecture its config.json "
                "describes has them)"
            )
        for name, shape in expected.items():
            if self.shape(name) != shape:
                raise ChipadaptError(
                    f"{self.key}: {self.folder}: tensor {name} has shape {list(self.shape(name))} in the weights "
                    f"but {list(shape)} in the architecture config.json describes"
                )

    def get(self, name: str) -> torch.Tensor:
        shape = self.shape(name)
        return self.rows(name, 0, shape[0] if shape else 1)


def _renames_checkpoint_keys(model) -> bool:
    try:
        from transformers.conversion_mapping import extract_weight_conversions_for_model
    except ImportError:  # transformers 4: only the class attribute below
        extract_weight_conversions_for_model = None
    if getattr(model, "_checkpoint_conversion_mapping", None):
        return True
    return bool(extract_weight_conversions_for_model and extract_weight_conversions_for_model(model))
