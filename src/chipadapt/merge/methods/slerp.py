"""Spherical interpolation as mergekit does it: the angle from the normalised tensors, the
interpolation applied to the raw tensors (no norm rescaling), linear when nearly parallel."""

import math

from chipadapt.merge.methods.base import MergeMethod, TensorMerge, cosine64, norm64


class Slerp(MergeMethod):
    def __init__(self, dot_threshold: float):
        self.dot_threshold = dot_threshold

    def __call__(self, name, chip, instruct, base, lam):
        c, i = chip.float(), instruct.float()
        nc, ni = norm64(c), norm64(i)
        if nc == 0.0 or ni == 0.0:
            return TensorMerge(lam * c + (1 - lam) * i, {"fallback": "zero_norm"})
        dot = cosine64(c, i, nc, ni)
        if abs(dot) > self.dot_threshold:
            return TensorMerge(lam * c + (1 - lam) * i, {"fallback": "parallel", "angle_deg": math.degrees(math.acos(dot))})
        theta = math.acos(dot)
        wi, wc = math.sin((1 - lam) * theta) / math.sin(theta), math.sin(lam * theta) / math.sin(theta)
        return TensorMerge(wi * i + wc * c, {"angle_deg": math.degrees(theta), "norm_ratio": nc / ni})
