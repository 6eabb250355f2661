"""What a merge method is: a function of the models' tensors, a lambda and whole-tensor statistics.

Methods that are elementwise once a few global numbers are known (norms and the angle) are
`chunkable`: the runner computes the statistics in one streaming pass and then merges a block of
rows at a time, so even a 500M-element embedding never needs more than one output copy in memory.
"""

from dataclasses import dataclass, field

import torch


def working(t: torch.Tensor) -> torch.Tensor:
    """The precision a method computes in: float32, or float64 when given float64. Merges never pass
    float64; the report replays a tensor's merge from its norms and angle in float64
    (report/merge_geometry.py), where float32 would round away a difference of angle**2."""
    return t if t.dtype == torch.float64 else t.float()


@dataclass
class TensorMerge:
    tensor: torch.Tensor  # float32
    diagnostics: dict = field(default_factory=dict)  # angle_deg, fallback, ... for the CSV


@dataclass
class TensorStats:
    """Whole-tensor statistics of chip and instruct, accumulated in float64."""

    norm_chip: float = 0.0
    norm_instruct: float = 0.0
    cos: float = 1.0
    _sq_c: float = 0.0
    _sq_i: float = 0.0
    _dot: float = 0.0

    def add(self, chip: torch.Tensor, instruct: torch.Tensor) -> None:
        c, i = chip.flatten().float(), instruct.flatten().float()
        self._sq_c += _dot64(c, c)
        self._sq_i += _dot64(i, i)
        self._dot += _dot64(c, i)

    def finish(self) -> "TensorStats":
        self.norm_chip, self.norm_instruct = self._sq_c**0.5, self._sq_i**0.5
        if self.norm_chip > 0 and self.norm_instruct > 0:
            self.cos = max(-1.0, min(1.0, self._dot / (self.norm_chip * self.norm_instruct)))
        return self

    @classmethod
    def of(cls, chip: torch.Tensor, instruct: torch.Tensor) -> "TensorStats":
        stats = cls()
        stats.add(chip, instruct)
        return stats.finish()


# Products summed in float32 over short runs, the partial sums accumulated in float64: measured
# 1e-10 relative error on a 4M-element dot (angle 1e-3 rad recovered to 1e-4 of itself), 10x
# faster than converting whole blocks to float64. A float32 sum over whole tensors would lose
# the small angles of a chip model and its instruct parent.
_RUN = 64


def _dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    whole = a.numel() // _RUN * _RUN
    total = float(torch.linalg.vecdot(a[:whole].view(-1, _RUN), b[:whole].view(-1, _RUN)).double().sum())
    if whole < a.numel():
        total += float(torch.dot(a[whole:].double(), b[whole:].double()))
    return total


class MergeMethod:
    needs_base = False
    chunkable = True  # elementwise given TensorStats; False = needs the whole tensor at once

    def __call__(
        self,
        name: str,
        chip: torch.Tensor,
        instruct: torch.Tensor,
        base: torch.Tensor | None,
        lam: float,
        stats: TensorStats,
    ) -> TensorMerge:
        raise NotImplementedError
