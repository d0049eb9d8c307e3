"""When users come: arrival times from a daily-pattern Poisson process, and who arrives.

:meth:`World.arrivals <bandit_engine.simulation.world.World.arrivals>` draws arrival times from a
Poisson process of mean rate ``arrivals_per_day`` with intensity proportional to
``1 + daily_amplitude * cos(2 pi (hour - peak_hour) / 24)`` (``hour`` in local time,
``utc_offset_hours`` from UTC; amplitude 0 gives a flat rate), and users in proportion to a hidden
visit weight ``exp(0.5 e_u)``. The daily pattern is the same for every user.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .world_config import WorldConfig

__all__ = ["arrival_times", "visitors"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_DAY = 86400.0


def arrival_times(
    cfg: WorldConfig, n: int, rng: np.random.Generator, *, start: float
) -> FloatArray:
    """``n`` sorted arrival times strictly after ``start`` (epoch seconds); ``n`` is not checked."""
    t = start
    a = cfg.daily_amplitude
    rate_max = cfg.arrivals_per_day * (1.0 + a) / _DAY
    times: list[FloatArray] = []
    have = 0
    # Thinning: candidates at the peak rate, each kept with probability rate(t) / rate_max.
    while have < n:
        m = max(64, int(1.2 * (n - have) * (1.0 + a)))
        cand = t + np.cumsum(rng.exponential(1.0 / rate_max, size=m))
        hour = (cand / 3600.0 + cfg.utc_offset_hours) % 24.0
        accept = (1.0 + a * np.cos(2.0 * np.pi * (hour - cfg.peak_hour) / 24.0)) / (1.0 + a)
        kept = cand[rng.random(m) < accept]
        times.append(kept)
        have += kept.shape[0]
        t = float(cand[-1])
    out: FloatArray = np.concatenate(times)[:n] if times else np.empty(0)
    return out


def visitors(pool: IntArray, weights: FloatArray, n: int, rng: np.random.Generator) -> IntArray:
    """``n`` users drawn with replacement from ``pool`` in proportion to ``weights``."""
    who = pool[rng.choice(pool.shape[0], size=n, p=weights / weights.sum())]
    out: IntArray = who.astype(np.intp)
    return out
