"""Self-normalized inverse propensity scoring (SNIPS).

The in-memory function :func:`snips` and its streaming accumulator :class:`SNIPSAccumulator`
(chunks in with ``update``, the estimate out with ``result``); the function pushes one batch
through the accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray
from .intervals import check_ci
from .ips import IPSAccumulator
from .streaming import RatioOfMeans, check_weight_mass, run_in_memory

__all__ = ["SNIPSAccumulator", "snips"]


def snips(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike | None = None,
    action_prob: ArrayLike | None = None,
    position: ArrayLike | None = None,
    clip: float | None = None,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
) -> Estimate:
    """Estimate the evaluated policy's mean reward by self-normalized IPS.

    ``value = sum_i w_i reward_i / sum_i w_i`` (weights optionally clipped first). Biased by
    O(1/n) but consistent, bounded by the reward range, and usually far less variable than IPS.
    The normal interval uses the ratio-estimator (delta-method) variance
    ``var(w r - value w) / (n mean(w)^2)``.

    Parameters are those of :func:`~bandit_engine.evaluation.ips`.

    Raises
    ------
    DataError
        When every weight is 0 (nothing to normalise by), or pscore is missing.
    """
    check_ci(ci, n_bootstrap)
    acc = SNIPSAccumulator(clip=clip, level=level)
    batch = acc.row_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        action_prob=action_prob,
        position=position,
    )
    return run_in_memory(acc, batch, ci=ci, n_bootstrap=n_bootstrap, seed=seed)


# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------


class SNIPSAccumulator(RatioOfMeans, IPSAccumulator):
    """Self-normalized IPS: ``sum(w r) / sum(w)``; interval from the ratio-estimator variance."""

    estimator: ClassVar[str] = "snips"
    term_names: ClassVar[tuple[str, ...]] = ("w_r", "w")

    def _terms(self, w: FloatArray, r: FloatArray) -> FloatArray:
        return np.stack((w * r, w))

    def _check_defined(self, means: FloatArray) -> None:
        check_weight_mass(self.estimator, float(means[-1]))
