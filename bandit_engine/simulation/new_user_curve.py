"""New users' share of the oracle by decision index (1..20), with intervals.

For a new-user wave (``[new_users]`` in a scenario) every round carries the 0-based index of the
decision for that wave member (``SeedTrace.wave_rank``). For each policy and each index ``j`` the
*share of the oracle* is ``sum(expected reward) / sum(oracle)`` over every seed's rounds with that
index (a ratio estimator), with a 95% normal interval by the delta method over those decisions
(``(e_i - share * o_i) / mean(o)`` as influence terms; decisions of one index are different users,
treated as independent, which ignores that they share one learning engine per seed). Windows
(decisions 1-5, 6-10, 11-20) are reported the same way, together with the paired difference in
expected reward against each control from decision 6 on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["CURVE_DECISIONS", "WINDOWS", "new_user_curve"]

CURVE_DECISIONS = 20
WINDOWS = ((1, 5), (6, 10), (11, 20))
_Z = 1.959963984540054


def _ratio(e: NDArray[np.float64], o: NDArray[np.float64]) -> dict[str, Any]:
    n = int(e.shape[0])
    if n == 0 or float(o.sum()) <= 0:
        return {"share": None, "ci_low": None, "ci_high": None, "n": n}
    share = float(e.sum() / o.sum())
    if n >= 2:
        infl = (e - share * o) / float(o.mean())
        half = _Z * float(infl.std(ddof=1)) / math.sqrt(n)
    else:
        half = math.nan
    return {"share": share, "ci_low": share - half, "ci_high": share + half, "n": n}


def _diff(a: NDArray[np.float64], c: NDArray[np.float64]) -> dict[str, Any]:
    d = a - c
    n = int(d.shape[0])
    if n < 2:
        return {"diff": None, "ci_low": None, "ci_high": None, "n": n}
    m = float(d.mean())
    half = _Z * float(d.std(ddof=1)) / math.sqrt(n)
    return {"diff": m, "ci_low": m - half, "ci_high": m + half, "n": n}


def new_user_curve(
    seeds: Sequence[Any], labels: Sequence[str], controls: Sequence[str]
) -> dict[str, Any]:
    """``{"decisions": 20, "policies": {label: {"curve": [...], "windows": {...},
    "growth_11_20_over_1_5": r, "vs_from_6": {control: diff}}}}``."""
    rank = np.concatenate([s.wave_rank for s in seeds])
    oracle = np.concatenate([s.oracle for s in seeds])
    exp = {lab: np.concatenate([s.arms[lab].expected for s in seeds]) for lab in labels}
    out: dict[str, Any] = {"decisions": CURVE_DECISIONS, "policies": {}}
    for lab in labels:
        e = exp[lab]
        curve = []
        for j in range(CURVE_DECISIONS):
            m = rank == j
            curve.append({"decision": j + 1, **_ratio(e[m], oracle[m])})
        windows = {}
        for lo, hi in WINDOWS:
            m = (rank >= lo - 1) & (rank <= hi - 1)
            windows[f"{lo}-{hi}"] = _ratio(e[m], oracle[m])
        a, b = windows["11-20"]["share"], windows["1-5"]["share"]
        late = rank >= 5
        rec = {
            "curve": curve,
            "windows": windows,
            "growth_11_20_over_1_5": (a / b) if a is not None and b else None,
            "vs_from_6": {
                c: _diff(e[late], exp[c][late]) for c in controls if c != lab and c in exp
            },
        }
        out["policies"][lab] = rec
    return out
