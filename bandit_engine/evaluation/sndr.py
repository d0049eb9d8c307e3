"""Self-normalized doubly robust (SNDR) estimator.

The in-memory function :func:`sndr` and its streaming accumulator :class:`SNDRAccumulator` (chunks
in with ``update``, the estimate out with ``result``); the function pushes one batch through the
accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray
from .dr import DRAccumulator
from .intervals import check_ci
from .streaming import check_weight_mass, run_in_memory

__all__ = ["SNDRAccumulator", "sndr"]


def sndr(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    position: ArrayLike | None = None,
    clip: float | None = None,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
) -> Estimate:
    """Estimate the evaluated policy's mean reward by self-normalized DR.

    ``value = mean_i dm_i + sum_i w_i (r_i - qhat(x_i, a_i)) / sum_i w_i``: the DR correction
    normalised by the weight mass, as in the Open Bandit Pipeline. Biased by O(1/n), more stable
    than DR under large weights. The normal interval uses the delta method on the three means.

    Parameters are those of :func:`~bandit_engine.evaluation.dr`.
    """
    check_ci(ci, n_bootstrap)
    acc = SNDRAccumulator(clip=clip, level=level)
    batch = acc.row_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        estimated_rewards=estimated_rewards,
        position=position,
    )
    return run_in_memory(acc, batch, ci=ci, n_bootstrap=n_bootstrap, seed=seed)


# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------


class SNDRAccumulator(DRAccumulator):
    """Self-normalized DR: ``mean(dm_i) + sum(w (r - qhat_a)) / sum(w)``."""

    estimator: ClassVar[str] = "sndr"
    term_names: ClassVar[tuple[str, ...]] = ("dm", "w_residual", "w")

    def _family_terms(self, dm: FloatArray, w: FloatArray, residual: FloatArray) -> FloatArray:
        return np.stack((dm, w * residual, w))

    def value_of(self, means: FloatArray) -> FloatArray:
        out: FloatArray = means[..., 0] + means[..., 1] / means[..., 2]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        return np.array([1.0, 1.0 / means[2], -means[1] / means[2] ** 2])

    def _check_defined(self, means: FloatArray) -> None:
        check_weight_mass(self.estimator, float(means[2]))
