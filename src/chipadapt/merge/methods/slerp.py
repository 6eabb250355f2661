"""Spherical interpolation as mergekit does it: the angle from the normalised tensors, the
interpolation applied to the raw tensors (no norm rescaling), linear when nearly parallel."""

import math

from chipadapt.merge.methods.base import MergeMethod, TensorMerge, working


class Slerp(MergeMethod):
    def __init__(self, dot_threshold: float):
        self.dot_threshold = dot_threshold

    def __call__(self, name, chip, instruct, base, lam, stats):
        c, i = working(chip), working(instruct)
        if stats.norm_chip == 0.0 or stats.norm_instruct == 0.0:
            return TensorMerge(lam * c + (1 - lam) * i, {"fallback": "zero_norm"})
        angle = math.degrees(math.acos(stats.cos))
        if abs(stats.cos) > self.dot_threshold:
            return TensorMerge(lam * c + (1 - lam) * i, {"fallback": "parallel", "angle_deg": angle})
        theta = math.acos(stats.cos)
        wi, wc = math.sin((1 - lam) * theta) / math.sin(theta), math.sin(lam * theta) / math.sin(theta)
        return TensorMerge(wi * i + wc * c, {"angle_deg": angle, "norm_ratio": stats.norm_chip / stats.norm_instruct})
