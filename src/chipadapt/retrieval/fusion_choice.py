"""Choose how a hybrid fuses its parts on dev questions, and fall back to one part when fusing does not help.

Each setting of a small grid (fusion method x dense weight x RRF constant) fuses the same candidate
lists, so the parts are searched once. The best setting (by `metric`, ties broken by the grid's
order) is kept only if it beats the better single part on that metric; otherwise the hybrid answers
with that part alone, so on dev it never loses to its best component. The record names only what is
in use at its top level: a fused setting that lost is kept under `rejected_fusion`, with its figure,
so that nobody reads it beside `use: sparse` as the setting the hybrid searched with.
"""

import itertools

import numpy as np

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.metrics import query_scores
from chipadapt.retrieval.retrievers import FUSIONS, Hits, fuse


def grid_settings(grid: dict) -> list[dict]:
    """{fusion: {"weight": [...], "rrf_k": [...]}} -> [{"fusion", "weight", "rrf_k"}, ...] (minmax ignores rrf_k)."""
    settings = []
    for fusion, axes in grid.items():
        if fusion not in FUSIONS:
            raise ChipadaptError(f"fusion.grid: {fusion!r} is not one of {', '.join(FUSIONS)}")
        weights = list(axes.get("weight") or [])
        rrf_ks = list(axes.get("rrf_k") or [60]) if fusion == "rrf" else [60]
        if not weights:
            raise ChipadaptError(f"fusion.grid.{fusion}.weight: give at least one dense weight")
        settings += [{"fusion": fusion, "weight": w, "rrf_k": k} for w, k in itertools.product(weights, rrf_ks)]
    return settings


def mean_metric(hits: Hits, positives: list[tuple[str, ...]], metric: str, ks: list[int], mrr_k: int) -> float:
    scores = [query_scores([pid for pid, _ in row], gold, ks, mrr_k)[metric] for row, gold in zip(hits, positives)]
    return float(np.mean([float(s) for s in scores]))


def check_tuning_metric(metric: str, ks: list[int], mrr_k: int) -> None:
    """`fusion.metric`, which chooses the hybrid's fusion and a reranker's weight, must be a figure we compute."""
    if metric not in query_scores([], ("x",), ks, mrr_k):
        raise ChipadaptError(f"fusion.metric: {metric!r} is not one of hit@k, recall@k (k in {ks}), mrr@{mrr_k}")


def choose_fusion(
    sparse_hits: Hits,
    dense_hits: Hits,
    positives: list[tuple[str, ...]],
    grid: dict,
    metric: str,
    ks: list[int],
    mrr_k: int,
) -> dict:
    """The chosen setting and every score it was chosen from, on the questions whose part hits are given:
    {"use": "fused", "fusion", "weight", "rrf_k", "fused_<metric>", ...} when fusing wins, else
    {"use": "sparse"|"dense", ..., "rejected_fusion": {"fusion", "weight", "rrf_k", "fused_<metric>"}}."""
    depth = max([*ks, mrr_k])
    check_tuning_metric(metric, ks, mrr_k)
    tried = []
    for setting in grid_settings(grid):
        fused = [
            fuse(s, d, setting["fusion"], setting["weight"], setting["rrf_k"], depth)
            for s, d in zip(sparse_hits, dense_hits)
        ]
        tried.append({**setting, metric: mean_metric(fused, positives, metric, ks, mrr_k)})
    best = max(tried, key=lambda t: t[metric])  # the first of equals: the grid's order decides ties
    names = [f"{t['fusion']}_w{t['weight']}" + (f"_k{t['rrf_k']}" if t["fusion"] == "rrf" else "") for t in tried]
    parts = {
        "sparse": mean_metric(sparse_hits, positives, metric, ks, mrr_k),
        "dense": mean_metric(dense_hits, positives, metric, ks, mrr_k),
    }
    better_part = max(parts, key=lambda name: (parts[name], name == "sparse"))  # equal: BM25, the cheaper
    fused = {
        "fusion": best["fusion"],
        "weight": best["weight"],
        "rrf_k": best["rrf_k"],
        f"fused_{metric}": best[metric],
    }
    figures = {"metric": metric, "questions": len(positives)}
    figures.update({f"{name}_{metric}": parts[name] for name in ("sparse", "dense")})
    grid_figures = {"grid": {name: t[metric] for name, t in zip(names, tried)}}
    if best[metric] > parts[better_part]:
        return {"use": "fused", **fused, **figures, **grid_figures}
    return {"use": better_part, **figures, "rejected_fusion": fused, **grid_figures}
