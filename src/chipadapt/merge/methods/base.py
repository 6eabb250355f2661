"""What a merge method is: a per-tensor function of the models' tensors and a lambda."""

from dataclasses import dataclass, field

import torch


@dataclass
class TensorMerge:
    tensor: torch.Tensor  # float32
    diagnostics: dict = field(default_factory=dict)  # angle_deg, fallback, ... for the CSV


class MergeMethod:
    needs_base = False

    def __call__(self, name: str, chip: torch.Tensor, instruct: torch.Tensor, base: torch.Tensor | None, lam: float) -> TensorMerge:
        raise NotImplementedError


def norm64(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.flatten(), dtype=torch.float64))


def cosine64(a: torch.Tensor, b: torch.Tensor, na: float, nb: float) -> float:
    # float64 accumulation: for 100M-element tensors float32 dot products lose the small angles.
    dot = float(torch.dot(a.flatten().double(), b.flatten().double()))
    return max(-1.0, min(1.0, dot / (na * nb)))
