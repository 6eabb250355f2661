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
SAME_MODEL = 0.1  # of the sweep's lambda step: two merges nearer than this are one model here


def method(name: str):
    """The merge method as merge.py builds it by default, from conf/merge/<name>.yaml (slerp's parallel
    threshold); a run that overrode it is replayed with the default."""
    return instantiate(OmegaConf.load(MERGE_CONF / f"{name}.yaml").method)


def in_plane(name: str, merge, lam: float, theta: float, norm_chip: float, norm_instruct: float) -> torch.Tensor:
    """The merged tensor in the plane of its two vectors, in float64 (kept by merge.methods.base.working)."""
    chip = torch.tensor([norm_chip, 0.0], dtype=torch.float64)
    instruct = torch.tensor([norm_instruct * math.cos(theta), norm_instruct * math.sin(theta)], dtype=torch.float64)
    stats = TensorStats(norm_chip=norm_chip, norm_instruct=norm_instruct, cos=math.cos(theta))
    return merge(name, chip, instruct, None, lam, stats).tensor


def number(row: dict, key: str) -> float | None:
    value = row.get(key)
    return None if value in (None, "") else float(value)


def method_distances(diagnostics: Path) -> dict | None:
    """{"lam", "tensors", "chipalign", "slerp", "slerp_parallel"}: each method's distance from the
    linear merge at the merge's lambda (per tensor, from its row), over the whole model, as a share of
    the chip-instruct distance; slerp_parallel is the share of tensors slerp merges linearly (nearly
    parallel). None without a readable diagnostics file, the merge configs, or a tensor with an angle."""
    if not diagnostics.is_file():
        return None
    try:
        merges = {name: method(name) for name in ("linear", *COMPARED)}
    except OSError:  # conf/ lives in the checkout; an installed package without it replays nothing
        return None
    apart, squared, lams, n, parallel = dict.fromkeys(COMPARED, 0.0), 0.0, set(), 0, 0
    with diagnostics.open() as handle:
        for row in csv.DictReader(handle):
            nc, ni, angle = number(row, "norm_chip"), number(row, "norm_instruct"), number(row, "angle_deg")
            if nc is None or ni is None:
                continue  # an end of the sweep (exact copies): no norms recorded, nothing between the two
            if angle is None:  # a zero tensor on one side: every method interpolates it linearly
                squared += (nc - ni) ** 2 if nc == 0 or ni == 0 else 0.0
                continue
            lam, theta = float(row["lam"]), math.radians(angle)
            merged = {name: in_plane(row["tensor"], m, lam, theta, nc, ni) for name, m in merges.items()}
            for name in COMPARED:
                apart[name] += float((merged[name] - merged["linear"]).square().sum())
            squared += (nc - ni) ** 2 + 4 * nc * ni * math.sin(theta / 2) ** 2  # |Wc - Wi|^2, no cancellation
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
    """merge_geometry's distances at the chosen lambda, with the largest over the sweep and the sweep's
    smallest lambda step (a linear merge moves by that share of the chip-instruct distance per step)."""
    found = [(r, method_distances(r.folder / "model" / "merge_diagnostics.csv")) for r in merged]
    found = [(r, g) for r, g in found if g is not None]
    if not found:
        return None
    at = next((g for r, g in found if r is best), found[len(found) // 2][1])
    lams = sorted({r.lam for r, _ in found})
    step = min((b - a for a, b in zip(lams, lams[1:])), default=None)
    return {**at, "max": {name: max(g[name] for _, g in found) for name in COMPARED}, "jobs": len(found), "step": step}


def geometry_text(g: dict) -> str:
    lam = f"lambda {g['lam']:g}" if g.get("lam") is not None else "the chosen lambda"
    text = (
        f"How different the methods' models are (report/merge_geometry.py: each tensor replayed in the plane of "
        f"its two vectors through the merge methods' own code, from the diagnostics): at {lam}, ChipAlign's merge "
        f"lies {100 * g['chipalign']:.3g}% of the chip-instruct distance from the linear merge, slerp's "
        f"{100 * g['slerp']:.3g}% ({100 * g['slerp_parallel']:.0f}% of the tensors are within slerp's parallel "
        "threshold and merged linearly)"
    )
    if g.get("step") is None:
        return text + "."
    return text + (
        f"; at most {100 * g['max']['chipalign']:.3g}% and {100 * g['max']['slerp']:.3g}% over the {g['jobs']} "
        f"lambdas of the sweep. Neighbouring lambdas {g['step']:.2g} apart lie {100 * g['step']:.2g}% of that "
        "distance from each other."
    )


def slerp_note(g: dict) -> str | None:
    """Why a variant may leave slerp out: its merges repeat the linear ones. None without a sweep to read
    it from (the fast and smoke variants leave slerp out for time, at one lambda)."""
    if g.get("step") is None:
        return None
    worst = g["max"]["slerp"]  # moving lambda by d moves a linear merge by d of the chip-instruct distance
    text = (
        f"Slerp is not evaluated in this variant (`variant.interp_methods`, `variant.skip`): at every lambda of the "
        f"sweep its merge lies within {100 * worst:.2g}% of the chip-instruct distance of the linear merge"
    )
    if worst < SAME_MODEL * g["step"]:
        return text + f", nearer than linear at a lambda {worst:.2g} away, so its figures would repeat linear's."
    return text + ": far enough to differ, so the study lacks it."
