"""Confidence intervals for off-policy estimates.

Every estimator here is a smooth function ``f`` of the means of a few per-row terms (IPS: one term
``w r``; SNIPS: ``w r`` and ``w``; SNDR: three). The normal interval uses the delta method,
``se^2 = grad f(mean)' S grad f(mean) / n`` with ``S`` the sample covariance of the terms (ddof 1);
for a plain mean this is the usual ``sd / sqrt(n)``, for a ratio it is the ratio-estimator variance.
The bootstrap interval resamples rows with replacement and takes percentiles of ``f`` over the
resampled means; it needs the per-row terms in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from ..errors import ConfigError
from ..policies.base import SeedLike, make_rng
from ._validate import FloatArray, check_level

__all__ = [
    "CI_METHODS",
    "bootstrap_interval",
    "check_ci",
    "delta_method_se",
    "normal_interval",
    "z_value",
]

CI_METHODS = ("normal", "bootstrap")
#: Rows gathered per bootstrap block; bounds the temporary (block, m) array.
_BLOCK_ELEMENTS = 1_000_000


def z_value(level: float) -> float:
    """Two-sided standard normal quantile: 1.959964 for ``level=0.95``."""
    return NormalDist().inv_cdf(0.5 + check_level(level) / 2.0)


def normal_interval(value: float, std_error: float, level: float = 0.95) -> tuple[float, float]:
    """``value -/+ z * std_error`` (``nan`` bounds when ``std_error`` is ``nan``)."""
    half = z_value(level) * std_error
    return value - half, value + half


def delta_method_se(gradient: FloatArray, covariance: FloatArray, n: int) -> float:
    """``sqrt(g' S g / n)``; ``nan`` when ``n < 2`` (no variance estimate from one row)."""
    if n < 2:
        return float("nan")
    var = float(gradient @ covariance @ gradient) / n
    # Rounding can make an exactly-zero variance slightly negative.
    return float(np.sqrt(max(var, 0.0)))


def check_ci(ci: str, n_bootstrap: int) -> str:
    """Validate the interval method and the number of bootstrap resamples."""
    if ci not in CI_METHODS:
        raise ConfigError.for_field("ci", ci, f"must be one of {list(CI_METHODS)}")
    ok = isinstance(n_bootstrap, int | np.integer) and not isinstance(n_bootstrap, bool)
    if not ok or n_bootstrap < 2:
        raise ConfigError.for_field("n_bootstrap", n_bootstrap, "must be an int >= 2")
    return ci


def bootstrap_interval(
    terms: FloatArray,
    statistic: Callable[[FloatArray], FloatArray],
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: SeedLike = None,
) -> tuple[float, float, float]:
    """Percentile bootstrap over rows.

    Parameters
    ----------
    terms
        (m, n) per-row terms, one row per term.
    statistic
        Maps (B, m) column means to (B,) estimates.
    n_bootstrap, level, seed
        Number of resamples, coverage level, seed or generator (same seed => same interval).

    Returns
    -------
    (low, high, std)
        Percentile bounds and the standard deviation of the bootstrap replicates.
    """
    check_ci("bootstrap", n_bootstrap)
    lvl = check_level(level)
    rng = make_rng(seed)
    m, n = terms.shape
    means = np.empty((n_bootstrap, m))
    per_block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n_bootstrap, per_block):
        stop = min(start + per_block, n_bootstrap)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = terms[:, idx].mean(axis=2).T
    reps = statistic(means)
    alpha = (1.0 - lvl) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(low), float(high), float(reps.std(ddof=1))
