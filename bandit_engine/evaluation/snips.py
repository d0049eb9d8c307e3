"""Self-normalized inverse propensity scoring (SNIPS)."""

from __future__ import annotations

from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from .intervals import check_ci
from .streaming import SNIPSAccumulator, run_in_memory

__all__ = ["snips"]


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
