"""A rank correlation with its 95% interval, or the reason it has none.

Spearman's rho is Pearson's correlation of the ranks (ties get their mean rank). Its interval is
Fisher's z with the Bonett-Wright variance (1 + rho^2 / 2) / (n - 3), which holds for Spearman's rho
where Fisher's 1 / (n - 3) is too narrow; with 3 pairs or fewer nothing is ruled out: [-1, +1].
When either side is constant (every held-out label equal, or a model that predicts one value for every
conversation) the correlation is undefined, 0 / 0: it is None with the reason, never a 0 that reads
as "measured, no relation"."""

import math
from dataclasses import dataclass

import numpy as np

from chipadapt.eval.intervals import CONFIDENCE

METHOD = "fisher-z (Bonett-Wright variance)"


@dataclass(frozen=True)
class Correlation:
    value: float | None
    ci: tuple[float, float] | None
    n: int
    method: str
    undefined: str | None = None  # why value is None


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata  # slow to import: only when a correlation is computed

    return rankdata(x, method="average")


def spearman_interval(rho: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    if n <= 3:
        return -1.0, 1.0
    from scipy.stats import norm

    z_crit = float(norm.ppf(0.5 + confidence / 2))
    clipped = max(min(rho, 1 - 1e-12), -1 + 1e-12)  # atanh(+-1) is infinite
    z, se = math.atanh(clipped), math.sqrt((1 + rho * rho / 2) / (n - 3))
    return math.tanh(z - z_crit * se), math.tanh(z + z_crit * se)


def spearman(predicted, labels) -> Correlation:
    """Spearman's rho of `predicted` against `labels` (same length) with its interval over the pairs."""
    p, y = np.asarray(predicted, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    n = len(y)
    if n < 2:
        return Correlation(None, None, n, METHOD, f"{n} pair: a correlation needs at least 2")
    if np.all(y == y[0]):
        return Correlation(None, None, n, METHOD, f"every label is {y[0]:g}: nothing to rank against")
    if np.all(p == p[0]):
        return Correlation(None, None, n, METHOD, f"every prediction is {p[0]:.3f}: the model ranks nothing")
    rho = float(np.corrcoef(_ranks(p), _ranks(y))[0, 1])
    return Correlation(rho, spearman_interval(rho, n), n, METHOD)
