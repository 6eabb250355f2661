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
    return chip.float(), instruct.float()


def test_distances_from_diagnostics_match_the_merged_tensors(tmp_path):
    lam = 0.6
    tensors = {"a": pair(4096, 0.8, 1.01, 0), "b": pair(2048, 3.0, 0.97, 1), "c": pair(1024, 12.0, 1.2, 2)}
    merges = {name: method(name) for name in ("linear", "chipalign", "slerp")}
    apart, squared = {"chipalign": 0.0, "slerp": 0.0}, 0.0
    rows = []
    for name, (chip, instruct) in tensors.items():
        stats = TensorStats.of(chip, instruct)
        merged = {k: m(name, chip, instruct, None, lam, stats).tensor.double() for k, m in merges.items()}
        for k in apart:
            apart[k] += float((merged[k] - merged["linear"]).square().sum())
        squared += float((chip.double() - instruct.double()).square().sum())
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
        assert found[k] == pytest.approx(math.sqrt(apart[k] / squared), rel=2e-3)
    assert 0 < found["slerp"] < found["chipalign"]  # slerp keeps the straight line's norms; ChipAlign does not
    assert found["slerp_parallel"] == pytest.approx(1 / 3)  # 0.8 degrees: within slerp's parallel threshold


def test_no_diagnostics_is_no_figure(tmp_path):
    assert method_distances(tmp_path / "missing.csv") is None
