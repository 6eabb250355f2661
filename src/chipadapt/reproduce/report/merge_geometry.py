"""How far apart the interpolation methods' merges are, read from one ChipAlign merge's diagnostics.

Linear, slerp and ChipAlign all combine the same two tensors, W = a * Wc + b * Wi, with coefficients
that depend on the tensors only through their norms and the angle between them. So each tensor can be
replayed in the plane of its two vectors (Wc = (|Wc|, 0), Wi = |Wi| (cos t, sin t)) through the merge
methods' own code, and the distance between two methods' merged models follows exactly, with no weights
read. It is given as a share of the distance between the chip and the instruct model: near zero, the
methods build the same model, and no evaluation can tell them apart.
"""

import csv
import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from chipadapt.merge.methods.base import TensorStats
from chipadapt.reproduce.report.merge_runs import Run

MERGE_CONF = Path(__file__).resolve().parents[4] / "conf" / "merge"
COMPARED = ("chipalign", "slerp")  # each against linear interpolation at the same lambda
SAME_MODEL = 0.01  # a tenth of the sweep's lambda step: nearer than this, two merges are one model here


def method(name: str):
    """The merge method as merge.py builds it, from conf/merge/<name>.yaml (slerp's parallel threshold)."""
    return instantiate(OmegaConf.load(MERGE_CONF / f"{name}.yaml").method)


def in_plane(name: str, merge, lam: float, theta: float, norm_chip: float, norm_instruct: float) -> torch.Tensor:
    chip = torch.tensor([norm_chip, 0.0], dtype=torch.float64)
    instruct = torch.tensor([norm_instruct * math.cos(theta), norm_instruct * math.sin(theta)], dtype=torch.float64)
    stats = TensorStats(norm_chip=norm_chip, norm_instruct=norm_instruct, cos=math.cos(theta))
    return merge(name, chip, instruct, None, lam, stats).tensor.double()


def method_distances(diagnostics: Path) -> dict | None:
    """{"lam", "tensors", "chipalign", "slerp", "slerp_parallel"}: each method's distance from the
    linear merge at the merge's lambda (per tensor, from its row), over the whole model, as a share of
    the chip-instruct distance; slerp_parallel is the share of tensors slerp merges linearly (nearly
    parallel). None without a readable diagnostics file or a tensor with an angle."""
    if not diagnostics.is_file():
        return None
    merges = {name: method(name) for name in ("linear", *COMPARED)}
    apart, squared, lams, n, parallel = dict.fromkeys(COMPARED, 0.0), 0.0, set(), 0, 0
    with diagnostics.open() as handle:
        for row in csv.DictReader(handle):
            if row.get("angle_deg") in (None, "") or row.get("norm_chip") in (None, ""):
                continue  # an end of the sweep or a zero tensor: every method merges it alike
            lam, theta = float(row["lam"]), math.radians(float(row["angle_deg"]))
            nc, ni = float(row["norm_chip"]), float(row["norm_instruct"])
            merged = {name: in_plane(row["tensor"], m, lam, theta, nc, ni) for name, m in merges.items()}
            for name in COMPARED:
                apart[name] += float((merged[name] - merged["linear"]).square().sum())
            squared += nc * nc + ni * ni - 2 * nc * ni * math.cos(theta)
            parallel += abs(math.cos(theta)) > merges["slerp"].dot_threshold
            lams.add(lam)
            n += 1
    if n == 0 or squared <= 0:
        return None
    return {
        "lam": lams.pop() if len(lams) == 1 else None,
        "tensors": n,
        **{name: math.sqrt(apart[name] / squared) for name in COMPARED},
        "slerp_parallel": parallel / n,
    }


def sweep_geometry(merged: list[Run], best: Run | None) -> dict | None:
    """merge_geometry's distances at the chosen lambda, with the largest over the sweep."""
    found = [(r, method_distances(r.folder / "model" / "merge_diagnostics.csv")) for r in merged]
    found = [(r, g) for r, g in found if g is not None]
    if not found:
        return None
    at = next((g for r, g in found if r is best), found[len(found) // 2][1])
    return {**at, "max": {name: max(g[name] for _, g in found) for name in COMPARED}, "jobs": len(found)}


def geometry_text(g: dict) -> str:
    lam = f"lambda {g['lam']:g}" if g.get("lam") is not None else "the chosen lambda"
    return (
        f"How different the methods' models are (report/merge_geometry.py: each tensor replayed in the plane of "
        f"its two vectors through the merge methods' own code, from the diagnostics): at {lam}, ChipAlign's merge "
        f"lies {100 * g['chipalign']:.3g}% of the chip-instruct distance from the linear merge, slerp's "
        f"{100 * g['slerp']:.3g}% ({100 * g['slerp_parallel']:.0f}% of the tensors are within slerp's parallel "
        f"threshold and merged linearly); at most {100 * g['max']['chipalign']:.3g}% and "
        f"{100 * g['max']['slerp']:.3g}% over the {g['jobs']} lambdas of the sweep. Neighbouring lambdas 0.1 apart "
        "lie 10% of that distance from each other."
    )


def slerp_note(g: dict) -> str:
    """Why a variant may leave slerp out: its merges repeat the linear ones."""
    step = g["max"]["slerp"]  # moving lambda by d moves a linear merge by d of the chip-instruct distance
    text = (
        f"Slerp is not evaluated in this variant (`variant.interp_methods`, `variant.skip`): at every lambda of the "
        f"sweep its merge lies within {100 * step:.2g}% of the chip-instruct distance of the linear merge"
    )
    if step < SAME_MODEL:
        return text + f", nearer than linear at a lambda {step:.2g} away, so its figures would repeat linear's."
    return text + ": far enough to differ, so the study lacks it."
