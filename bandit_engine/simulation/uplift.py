"""Uplift of a policy over a control, with a 95% interval, from paired per-round values.

``uplift`` is the relative difference in *expected* reward per decision of a policy over a
control (the true expected reward of the bundles each one chose), ``difference`` the absolute one.
The simulator knows the truth, so it can compare what each policy earns on average without the
click and order coin flips, whose noise would otherwise dominate the difference over a few
thousand decisions. ``realized_uplift`` is the same comparison on the realized rewards (what an
A/B test would see). Both are paired: every policy saw the same users and the same random
outcomes.

* With two or more seeds: per seed ``d_s = mean_A,s - mean_C,s`` and ``u_s = d_s / mean_C,s``; the
  interval is Student's t over seeds (``t_{0.975, S-1} * sd / sqrt(S)``). Seeds are independent
  worlds and streams, so this interval also covers world-to-world variation.
* With one seed: a normal interval over the per-round paired differences ``r_A,t - r_C,t``, the
  relative one by the delta method for a ratio of means. It treats rounds as independent, which
  ignores the autocorrelation learning creates: it is narrower than it should be. Use
  ``--seeds 2`` or more for a decision.

``summary.json`` records which interval was used (``interval``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

__all__ = ["mean_interval", "paired_uplift"]

FloatArray = NDArray[np.float64]

_LEVEL = 0.95


def _t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of a mean over seeds."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if v.shape[0] < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + _LEVEL / 2, v.shape[0] - 1)) * float(v.std(ddof=1))
    half /= math.sqrt(v.shape[0])
    return m, m - half, m + half


def _z() -> float:
    return float(stats.norm.ppf(0.5 + _LEVEL / 2))


def mean_interval(per_seed: Sequence[FloatArray]) -> tuple[float, float, float]:
    """Mean of per-round values with its 95% interval (t over seeds, or normal over rounds)."""
    if len(per_seed) >= 2:
        return _t_interval([float(a.mean()) for a in per_seed])
    a = per_seed[0]
    m = float(a.mean())
    if a.shape[0] < 2:
        return m, math.nan, math.nan
    half = _z() * float(a.std(ddof=1)) / math.sqrt(a.shape[0])
    return m, m - half, m + half


def paired_uplift(a: Sequence[FloatArray], c: Sequence[FloatArray]) -> dict[str, Any]:
    """Uplift of ``a`` over ``c`` from paired per-round values, one array per seed (module
    docstring: t over seeds when there are two or more, else per-round normal)."""
    if len(a) >= 2:
        ma = np.array([float(x.mean()) for x in a])
        mc = np.array([float(x.mean()) for x in c])
        diff, dlo, dhi = _t_interval(ma - mc)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_s = (ma - mc) / mc
        rel, rlo, rhi = _t_interval(rel_s) if np.all(np.isfinite(rel_s)) else (math.nan,) * 3
        method = f"t-interval over {len(a)} seeds"
    else:
        x, y = a[0], c[0]
        d = x - y
        n = d.shape[0]
        diff = float(d.mean())
        mc_ = float(y.mean())
        z = _z()
        if n >= 2:
            half = z * float(d.std(ddof=1)) / math.sqrt(n)
            dlo, dhi = diff - half, diff + half
        else:
            dlo = dhi = math.nan
        if mc_ > 0 and n >= 2:
            rel = diff / mc_
            # delta method for mean(d) / mean(c): influence terms (d_t - rel * c_t) / mean(c)
            infl = (d - rel * y) / mc_
            half = z * float(infl.std(ddof=1)) / math.sqrt(n)
            rlo, rhi = rel - half, rel + half
        else:
            rel = rlo = rhi = math.nan
        method = "paired per-round normal interval (1 seed; ignores autocorrelation)"
    # The verdict follows the interval the reader sees (the relative one), falling back to the
    # absolute one when the relative one is undefined (a control with zero reward).
    lo, hi = (rlo, rhi) if math.isfinite(rlo) and math.isfinite(rhi) else (dlo, dhi)
    significant = bool(math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0))
    return {
        "uplift": rel,
        "ci_low": rlo,
        "ci_high": rhi,
        "difference": diff,
        "difference_ci_low": dlo,
        "difference_ci_high": dhi,
        "significant": significant,
        "interval": method,
    }
