"""Hugging Face model folders: find, load and save them. Offline, safetensors only, no remote code."""

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import AutoModelForCausalLM

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.io.jsonl import json_object
from chipadapt.models.locate import locate_model
from chipadapt.models.portable_folder import make_portable
from chipadapt.models.safe_load import safe_from_pretrained, safe_tokenizer
from chipadapt.models.whole_model_folder import require_config_json

log = logging.getLogger(__name__)

# Written beside a model whose tokenizer the tokenizer stage extended: what it added and how the new
# rows were initialised (read by LoRA, which keeps those rows trainable, and by the stages' manifests).
TOKENIZER_REPORT_NAME = "tokenizer_report.json"


def check_hf_folder(folder: str | Path, key: str) -> Path:
    """The model folder `folder` names: a folder, a .gguf file or a hub id (see models/locate.py)."""
    folder = locate_model(folder, key)
    if not folder.is_dir():
        raise ChipadaptError(f"{key}: {folder} is not a folder")
    require_config_json(folder, key)
    # Read once here so a broken config.json is one line naming it before any work, whichever
    # entry point reads it next (train.py's sequence-length check used to crash on it).
    json_object(folder / "config.json", key)
    return folder


def resolve_model_folder(model_cfg: DictConfig) -> Path:
    """`model.path` when set; otherwise the folder the model's `source` materialises (and caches)."""
    if model_cfg.path:
        return check_hf_folder(model_cfg.path, "model.path")
    if model_cfg.source is None:
        raise ChipadaptError("model.path: not set, and the model config has no source to build it from")
    return check_hf_folder(instantiate(model_cfg.source).materialize(), "model.source")


def context_length(folder: Path, key: str = "model.path") -> int:
    path = Path(folder) / "config.json"
    config = json_object(path, key)
    # Multimodal configs (Gemma-3, Llava) keep the language model's settings in text_config.
    for section in (config, config.get("text_config") or {}):
        for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            if isinstance(section, dict) and name in section:
                value = section[name]
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ChipadaptError(f"{key}: {path}: {name} must be a positive integer, got {value!r}")
                return value
    raise ChipadaptError(f"{key}: {path}: no context length (max_position_embeddings) found")


def load_tokenizer(folder: Path, key: str = "model.path"):
    return safe_tokenizer(folder, key)


def resolve_attention(attn_implementation: str) -> str:
    """`auto`: flash_attention_2 where the flash-attn package and a CUDA GPU are there, else sdpa."""
    if attn_implementation != "auto":
        return attn_implementation
    import importlib.util

    return "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"


def load_causal_lm(folder: Path, dtype: str, attn_implementation: str, key: str = "model.path"):
    # exact: a causal LM's folder holds its weights and nothing else; a missing, extra or misshapen
    # tensor means the weights or the config.json are not this model's (never trained or scored
    # with random tensors).
    model = safe_from_pretrained(
        AutoModelForCausalLM,
        folder,
        key,
        exact=True,
        dtype=getattr(torch, dtype),
        attn_implementation=resolve_attention(attn_implementation),
    )
    # from_pretrained returns eval mode; training code switches modes itself.
    return model


def empty_causal_lm(folder: Path, dtype: str, attn_implementation: str, key: str = "model.path"):
    """load_causal_lm's model without its weights: the architecture config.json describes, every
    parameter and buffer on the meta device (no storage; config.json is the only file read). FSDP's
    rank-0 loading builds this on the other ranks and fills their shards from rank 0's weights
    (scaleout/rank0_load.py)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise ChipadaptError(f"{key}: cannot read {folder}/config.json: {' '.join(str(err).split())}") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(
            config,
            dtype=getattr(torch, dtype),
            attn_implementation=resolve_attention(attn_implementation),
            trust_remote_code=False,
        )


def check_causal_lm_weights(folder: Path, key: str = "model.path") -> None:
    """load_causal_lm's weight checks on the meta device: names and shapes come from the files'
    headers and no tensor is read, so a model that cannot train is refused in about a second, before
    data preparation (hours, on a first pass over a large corpus), not after it."""
    safe_from_pretrained(AutoModelForCausalLM, folder, key, exact=True, device_map="meta")


def save_hf_folder(
    model,
    tokenizer,
    dest: str | Path,
    state_dict: dict | None = None,
    command: str = "train",
    records: dict | None = None,
) -> Path:
    """Write model (safetensors) + tokenizer as one folder, atomically (`state_dict`: weights gathered
    from shards, when the model's own parameters are only this process's shard; `records`: JSON files
    by name, published with the weights, e.g. export.json)."""
    dest = Path(dest)
    with atomic_directory(dest, command) as tmp:
        model.save_pretrained(
            tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict is not None else {})
        )
        tokenizer.save_pretrained(tmp)
        make_portable(tmp)
        for name, record in (records or {}).items():
            write_json_atomic(tmp / name, record)
    log.info("saved Hugging Face folder %s", dest)
    return dest
