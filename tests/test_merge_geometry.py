"""The distance between interpolation methods' merges, replayed from the diagnostics alone, equals the
distance between the merged tensors themselves."""

import csv
import math

import pytest
import torch

from chipadapt.merge.methods.base import TensorStats
from chipadapt.reproduce.report.merge_geometry import method, method_distances


def pair(n: int, degrees: float, ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An instruct tensor and a chip tensor `degrees` away from it, `ratio` times its norm."""
    g = torch.Generator().manual_seed(seed)
    instruct = torch.randn(n, generator=g, dtype=torch.float64)
    other = torch.randn(n, generator=g, dtype=torch.float64)
    other -= other.dot(instruct) / instruct.dot(instruct) * instruct
    t = math.radians(degrees)
    unit = instruct / instruct.norm()
    chip = (math.cos(t) * unit + math.sin(t) * other / other.norm()) * instruct.norm() * ratio
    return chip, instruct  # float64: the methods keep it, so the reference is exact


@pytest.mark.parametrize(
    "angles, ratios",
    [
        ((0.8, 3.0, 12.0), (1.01, 0.97, 1.2)),
        # the fast variant's angles with equal norms: a difference of angle**2 alone, lost in float32
        ((0.05, 0.04, 0.06), (1.0, 1.0, 1.0)),
    ],
)
def test_distances_from_diagnostics_match_the_merged_tensors(tmp_path, angles, ratios):
    lam = 0.6
    tensors = {
        name: pair(n, degrees, ratio, seed)
        for seed, (name, n, degrees, ratio) in enumerate(zip("abc", (4096, 2048, 1024), angles, ratios))
    }
    merges = {name: method(name) for name in ("linear", "chipalign", "slerp")}
    apart, squared = {"chipalign": 0.0, "slerp": 0.0}, 0.0
    rows = []
    for name, (chip, instruct) in tensors.items():
        stats = exact_stats(chip, instruct)
        merged = {k: m(name, chip, instruct, None, lam, stats).tensor.double() for k, m in merges.items()}
        for k in apart:
            apart[k] += float((merged[k] - merged["linear"]).square().sum())
        squared += float((chip - instruct).square().sum())
        diagnostics = merges["chipalign"](name, chip, instruct, None, lam, stats).diagnostics
        rows.append({"tensor": name, "lam": lam, **diagnostics})
    rows.append({"tensor": "zero", "lam": lam, "fallback": "zero_norm"})  # no angle: skipped
    path = tmp_path / "merge_diagnostics.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["tensor", "lam", "angle_deg", "norm_chip", "norm_instruct", "norm_ratio", "fallback"]
        )
        writer.writeheader()
        writer.writerows(rows)
    found = method_distances(path)
    assert found["lam"] == lam and found["tensors"] == 3
    for k in apart:
        assert found[k] == pytest.approx(math.sqrt(apart[k] / squared), rel=1e-6)
    assert 0 <= found["slerp"] < found["chipalign"]  # slerp keeps the straight line's norms; ChipAlign does not
    # within slerp's parallel threshold (1.81 degrees), where it is linear: 0.8 degrees, or all three small angles
    assert found["slerp_parallel"] == pytest.approx(sum(a < 1.81 for a in angles) / 3)


def exact_stats(chip: torch.Tensor, instruct: torch.Tensor) -> TensorStats:
    """The statistics in float64 throughout (merge.py's TensorStats sums float32 products), so the
    reference below is exact and the replay's own precision is what the test sees."""
    nc, ni = float(chip.norm()), float(instruct.norm())
    return TensorStats(norm_chip=nc, norm_instruct=ni, cos=float(chip.dot(instruct)) / (nc * ni))


def test_no_diagnostics_is_no_figure(tmp_path):
    assert method_distances(tmp_path / "missing.csv") is None
