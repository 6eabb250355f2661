"""Methods on task vectors (tau = model - base): task arithmetic, TIES and DELLA.

The two task vectors are weighted lam (chip) and 1 - lam (instruct); `scale` multiplies their
merge before it is added to the base (task arithmetic's lambda; 1 keeps the convex combination).
"""

import zlib

import torch

from chipadapt.merge.methods.base import MergeMethod, TensorMerge


def _disjoint_merge(taus: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """TIES' sign election and disjoint mean: per entry, the sign with the larger total weighted
    mass wins and only task vectors agreeing with it are averaged."""
    stacked = torch.stack([w * t for w, t in zip(weights, taus)])
    sign = torch.sign(stacked.sum(dim=0))
    agree = (torch.sign(stacked) == sign) & (stacked != 0)
    weight_sum = (agree * torch.tensor(weights, dtype=stacked.dtype).view(-1, *[1] * (stacked.dim() - 1))).sum(dim=0)
    return (stacked * agree).sum(dim=0) / weight_sum.clamp(min=1e-12)


class TaskArithmetic(MergeMethod):
    needs_base = True

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, name, chip, instruct, base, lam, stats):
        b = base.float()
        merged = lam * (chip.float() - b) + (1 - lam) * (instruct.float() - b)
        return TensorMerge(b + self.scale * merged)


class Ties(MergeMethod):
    needs_base = True
    chunkable = False  # the top-k magnitude threshold is over the whole tensor

    def __init__(self, density: float, scale: float):
        self.density, self.scale = density, scale

    def trim(self, tau: torch.Tensor, name: str) -> torch.Tensor:
        keep = max(1, int(round(self.density * tau.numel())))
        if keep >= tau.numel():
            return tau
        threshold = tau.abs().flatten().kthvalue(tau.numel() - keep + 1).values
        return tau * (tau.abs() >= threshold)

    def __call__(self, name, chip, instruct, base, lam, stats):
        b = base.float()
        taus = [self.trim(chip.float() - b, name), self.trim(instruct.float() - b, name)]
        return TensorMerge(b + self.scale * _disjoint_merge(taus, [lam, 1 - lam]))


class Della(Ties):
    """DELLA: drop entries at random with a probability that falls with their magnitude rank
    (MagPrune: density +- epsilon across ranks), rescale survivors by 1/keep-probability, then
    TIES' sign election and disjoint merge. Seeded per tensor name: reproducible."""

    def __init__(self, density: float, epsilon: float, scale: float, seed: int):
        super().__init__(density, scale)
        self.epsilon, self.seed = epsilon, seed

    def trim(self, tau: torch.Tensor, name: str) -> torch.Tensor:
        n = tau.numel()
        ranks = torch.empty(n, dtype=torch.float32)
        ranks[tau.abs().flatten().argsort()] = torch.arange(n, dtype=torch.float32) / max(1, n - 1)
        keep_prob = (self.density - self.epsilon + 2 * self.epsilon * ranks).clamp(1e-3, 1.0).view_as(tau)
        generator = torch.Generator().manual_seed(self.seed + zlib.crc32(name.encode()))
        mask = torch.rand(tau.shape, generator=generator) < keep_prob
        return tau * mask / keep_prob
