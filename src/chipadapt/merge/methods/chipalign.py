"""ChipAlign (arXiv 2412.19819): interpolate along the geodesic of the unit sphere, then rescale by
the geometric interpolation of the two Frobenius norms.

  W = ||Wc||^lam * ||Wi||^(1-lam) * (sin(lam*theta) Wc/||Wc|| + sin((1-lam)*theta) Wi/||Wi||) / sin(theta)
"""

import math

from chipadapt.merge.methods.base import MergeMethod, TensorMerge, working

# Below this angle sin(lam*t)/sin(t) -> lam to float64 precision: use the limit (no 0/0).
PARALLEL_RAD = 1e-6


class ChipAlign(MergeMethod):
    def __call__(self, name, chip, instruct, base, lam, stats):
        if lam == 1.0:
            return TensorMerge(working(chip), {"fallback": "exact_chip"})
        if lam == 0.0:
            return TensorMerge(working(instruct), {"fallback": "exact_instruct"})
        c, i = working(chip), working(instruct)
        nc, ni = stats.norm_chip, stats.norm_instruct
        if nc == 0.0 or ni == 0.0:
            # No direction to follow on the sphere; the norm rescaling would give zero: interpolate.
            return TensorMerge(lam * c + (1 - lam) * i, {"fallback": "zero_norm", "norm_chip": nc, "norm_instruct": ni})
        theta = math.acos(stats.cos)
        scale = nc**lam * ni ** (1 - lam)
        diagnostics = {
            "angle_deg": math.degrees(theta),
            "norm_chip": nc,
            "norm_instruct": ni,
            "norm_ratio": nc / ni,
            "fallback": "",
        }
        if theta < PARALLEL_RAD:
            wc, wi = lam, 1 - lam
            diagnostics["fallback"] = "parallel"
        elif math.pi - theta < PARALLEL_RAD:
            # Opposite directions: every great circle is a geodesic; fall back to the chord.
            diagnostics["fallback"] = "antiparallel"
            return TensorMerge(lam * c + (1 - lam) * i, diagnostics)
        else:
            wc, wi = math.sin(lam * theta) / math.sin(theta), math.sin((1 - lam) * theta) / math.sin(theta)
        return TensorMerge((c * (scale * wc / nc)).add_(i, alpha=scale * wi / ni), diagnostics)
