"""Exploration scale derived from the reward scale: ``alpha = "auto"`` / ``v = "auto"``.

The confidence width of a linear bandit is proportional to the noise scale of the reward
(Abbasi-Yadkori, Pal, Szepesvari, "Improved algorithms for linear stochastic bandits", NeurIPS
2011, Theorem 2: the radius is ``R sqrt(d log(...)) + sqrt(lambda) S`` with ``R`` the
sub-Gaussian scale of the noise), and the posterior of linear Thompson sampling (Agrawal & Goyal,
ICML 2013) is scaled by the same ``R``. A fixed ``alpha = 1`` is therefore right for one reward
scale only: with this project's rewards (1 per click, 2 per order, 0.01 per CNY; about 0.1 per
decision, standard deviation about 0.5) it explores for far too long.

``"auto"`` uses ``kappa * sigma_hat``: ``sigma_hat`` is the running standard deviation of the
rewards the policy has learned from (Welford's algorithm), shrunk towards ``sigma0`` (one reward
unit) by ``n0`` pseudo-observations so that the first decisions use a sane width;
``kappa = AUTO_KAPPA`` stands in for the theoretical ``sqrt(d log ...)`` factor, which is
known to over-explore in practice (chosen on the simulator: benchmarks/README.md). Rescaling every reward
by ``c`` rescales ``sigma_hat``, the posterior mean and hence the whole decision rule by ``c``:
the choices do not change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError, ValidationError
from ._checks import check_positive

__all__ = ["AUTO_KAPPA", "RewardMoments", "check_scale"]

#: ``scale = AUTO_KAPPA * sigma_hat`` for LinUCB, linear TS and the pair policies.
AUTO_KAPPA = 0.1
SIGMA0 = 1.0
N0 = 20.0


def check_scale(name: str, value: Any, *, allow_zero: bool = True) -> float | str:
    """``"auto"`` or a number >= 0 (> 0 unless ``allow_zero``)."""
    if isinstance(value, str):
        if value == "auto":
            return "auto"
        raise ConfigError.for_field(name, value, "must be 'auto' or a number")
    return check_positive(name, value, allow_zero=allow_zero)


class RewardMoments:
    """Running count, mean and sum of squared deviations of learned rewards."""

    __slots__ = ("m2", "mean", "n")

    def __init__(self) -> None:
        self.n = 0.0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, r: float) -> None:
        self.n += 1.0
        delta = r - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (r - self.mean)

    def sigma(self, sigma0: float = SIGMA0, n0: float = N0) -> float:
        return math.sqrt((self.m2 + n0 * sigma0**2) / (self.n + n0))

    def scale(self, value: float | str, kappa: float = AUTO_KAPPA) -> float:
        """The exploration scale: ``value`` itself, or ``kappa * sigma_hat`` for ``"auto"``."""
        return kappa * self.sigma() if value == "auto" else float(value)

    def to_list(self) -> list[float]:
        return [self.n, self.mean, self.m2]

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RewardMoments:
        """The moments saved under ``state["reward_moments"]`` (zero for older files)."""
        moments = cls()
        moments.set_list(state.get("reward_moments"))
        return moments

    def set_list(self, values: Sequence[Any] | None) -> None:
        if values is None:  # a model saved before moments existed
            self.n = self.mean = self.m2 = 0.0
            return
        vals = [float(v) for v in values]
        if len(vals) != 3 or not all(math.isfinite(v) for v in vals) or vals[0] < 0:
            raise ValidationError.for_field("state.reward_moments", values, "must be [n, mean, m2]")
        self.n, self.mean, self.m2 = vals
