"""Statistics for the simulations' verdicts: the Wilson interval of a proportion and power-law fits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95 % normal quantile."""


def wilson_interval(k, n, z: float = Z95):
    """Wilson score interval ``(low, high)`` of a proportion ``k / n`` (95 % by default; arrays
    allowed). ``n = 0`` carries no information: ``(0, 1)``. The ends are exact at ``k = 0`` and ``k = n``."""
    k = np.asarray(k, float)
    n = np.asarray(n, float)
    nn = np.maximum(n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / nn, 0.5)
        den = 1.0 + z * z / nn
        centre = (p + z * z / (2 * nn)) / den
        half = z * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn ** 2)) / den
    lo = np.where((n > 0) & (k > 0), np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where((n > 0) & (k < n), np.clip(centre + half, 0.0, 1.0), 1.0)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)


@dataclass(frozen=True)
class PowerLaw:
    """``y = prefactor * x**slope`` fitted in log-log; ``ci`` is the confidence interval of the slope."""

    slope: float
    ci: tuple
    prefactor: float
    n: int
    level: float

    def as_dict(self) -> dict:
        return {"slope": self.slope, "ci_low": self.ci[0], "ci_high": self.ci[1],
                "prefactor": self.prefactor, "n": self.n, "level": self.level}


def fit_power_law(x, y, groups=None, level: float = 0.95) -> PowerLaw:
    """Least-squares slope of ``log y`` on ``log x`` with a Student-t confidence interval.

    With ``groups`` (e.g. the seed of each point) every group gets its own intercept
    and the slope is common (a fixed-effects fit: seed-to-seed offsets do not blur the
    exponent). Non-finite or non-positive points are dropped.
    """
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    g = np.zeros(x.shape, dtype=np.int64) if groups is None else np.asarray(groups)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly, g = np.log(x[ok]), np.log(y[ok]), g[ok]
    levels, gi = np.unique(g, return_inverse=True)
    X = np.column_stack([lx, (gi[:, None] == np.arange(levels.size)[None, :]).astype(np.float64)])
    n, p = X.shape
    if n <= p or np.ptp(lx) == 0:
        return PowerLaw(float("nan"), (float("nan"), float("nan")), float("nan"), int(n), level)
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    s2 = float(resid @ resid) / (n - p)
    cov = s2 * np.linalg.pinv(X.T @ X)
    half = float(stats.t.ppf(0.5 + level / 2, n - p)) * float(np.sqrt(cov[0, 0]))
    slope = float(coef[0])
    return PowerLaw(slope, (slope - half, slope + half), float(np.exp(np.mean(coef[1:]))), int(n), level)


__all__ = ["PowerLaw", "Z95", "fit_power_law", "wilson_interval"]
