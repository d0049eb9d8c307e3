"""Intervals from the sufficient statistics: ratio metrics clustered by user, uplift, and the
sample-ratio-mismatch test.

Ratio metric, clustered by user
-------------------------------
A group's metric is ``R = sum_u Y_u / sum_u N_u`` over its ``n`` users (``N_u`` the user's
decisions, ``Y_u`` their summed outcome). A user's decisions are not independent (the same person,
the same tastes), so the variance is taken over users, not decisions. By the delta method (Deng,
Lu & Litz 2018, "Applying the Delta Method in Metric Analytics", KDD; the cluster-robust variance
of a ratio estimator)::

    Var(R) ~= (s_YY - 2 R s_NY + R^2 s_NN) / (n * Nbar^2)

with ``s`` the sample (co)variances of ``Y_u`` and ``N_u`` over users and ``Nbar = sum N_u / n``.
Groups hold different users, so for the uplift ``D = R_p - R_h`` the variances add, and the
relative uplift ``R_p / R_h - 1`` has ``Var ~= Var(R_p) / R_h^2 + R_p^2 Var(R_h) / R_h^4``. The
intervals are normal (``+- 1.96 sd``): honest for many users per cell, optimistic for a handful
(cells with fewer than 2 users get no interval).

Sample ratio mismatch
---------------------
Users per group against the configured shares, Pearson's chi-square with ``k - 1`` degrees of
freedom; a p-value below 0.001 is flagged (the usual threshold, Fabijan et al. 2019, "Diagnosing
Sample Ratio Mismatch in Online Controlled Experiments", KDD): the bucketing or the logging is
broken and no uplift should be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats as sps

__all__ = ["SRM_THRESHOLD", "Z95", "RatioStat", "srm_test", "uplift"]

Z95 = 1.959963984540054
SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class RatioStat:
    """A ratio metric and its delta-method variance (``var`` NaN when undefined)."""

    clusters: int
    n: float
    value: float
    var: float

    @classmethod
    def from_sums(
        cls, clusters: int, n: float, y: float, nn: float, yy: float, ny: float
    ) -> RatioStat:
        """From the cell's sums (:mod:`~bandit_engine.reporting.aggregate`)."""
        k = int(clusters)
        if n <= 0 or k <= 0:
            return cls(k, float(n), math.nan, math.nan)
        r = y / n
        if k < 2:
            return cls(k, float(n), r, math.nan)
        nbar = n / k
        s_nn = (nn - n * n / k) / (k - 1)
        s_yy = (yy - y * y / k) / (k - 1)
        s_ny = (ny - n * y / k) / (k - 1)
        var = max(s_yy - 2.0 * r * s_ny + r * r * s_nn, 0.0) / (k * nbar * nbar)
        return cls(k, float(n), r, var)

    def interval(self) -> tuple[float, float]:
        half = Z95 * math.sqrt(self.var) if math.isfinite(self.var) else math.nan
        return self.value - half, self.value + half


def uplift(treated: RatioStat, control: RatioStat) -> dict[str, float]:
    """``diff = R_t - R_c`` and ``relative = R_t / R_c - 1`` with 95% intervals (NaN where a
    variance or the control's value is undefined)."""
    diff = treated.value - control.value
    var = treated.var + control.var
    half = Z95 * math.sqrt(var) if math.isfinite(var) else math.nan
    out = {"diff": diff, "diff_low": diff - half, "diff_high": diff + half}
    rc = control.value
    if math.isfinite(rc) and rc != 0.0:
        rel = treated.value / rc - 1.0
        rvar = treated.var / rc**2 + treated.value**2 * control.var / rc**4
        rhalf = Z95 * math.sqrt(rvar) if math.isfinite(rvar) else math.nan
        out.update(relative=rel, relative_low=rel - rhalf, relative_high=rel + rhalf)
    else:
        out.update(relative=math.nan, relative_low=math.nan, relative_high=math.nan)
    return out


def srm_test(observed: Mapping[str, int], expected_share: Mapping[str, float]) -> dict[str, object]:
    """Pearson's chi-square of users per group against the configured shares.

    Groups observed but not configured count with share 0 (always a mismatch); configured groups
    with no users count with 0 observed."""
    names = sorted(set(observed) | set(expected_share))
    total = sum(int(observed.get(g, 0)) for g in names)
    obs = [int(observed.get(g, 0)) for g in names]
    exp = [total * float(expected_share.get(g, 0.0)) for g in names]
    if total == 0:
        return {"chi2": math.nan, "df": len(names) - 1, "p_value": math.nan, "mismatch": False}
    if any(e == 0 and o > 0 for o, e in zip(obs, exp, strict=True)):
        chi2, p = math.inf, 0.0
    else:
        keep = [(o, e) for o, e in zip(obs, exp, strict=True) if e > 0]
        chi2 = float(sum((o - e) ** 2 / e for o, e in keep))
        p = float(sps.chi2.sf(chi2, max(len(keep) - 1, 1)))
    return {
        "chi2": chi2,
        "df": len(names) - 1,
        "p_value": p,
        "mismatch": bool(p < SRM_THRESHOLD),
        "threshold": SRM_THRESHOLD,
        "observed": dict(zip(names, obs, strict=True)),
        "expected": dict(zip(names, exp, strict=True)),
    }
