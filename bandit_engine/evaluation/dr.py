"""Doubly robust (DR) estimator."""

from __future__ import annotations

from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from .intervals import check_ci
from .streaming import DRAccumulator, run_in_memory

__all__ = ["dr"]


def dr(
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
    """Estimate the evaluated policy's mean reward by the doubly robust estimator.

    ``value = mean_i [ sum_a pi(a | x_i) qhat(x_i, a) + min(w_i, clip) (r_i - qhat(x_i, a_i)) ]``
    (Dudík, Langford, Li, ICML 2011). Unbiased without clipping if either the propensities or
    the reward model are right; equals DM exactly when the model is exact at every logged
    action (``r_i == qhat(x_i, a_i)``).

    Parameters
    ----------
    reward, action, pscore
        (n,) as in :func:`~bandit_engine.evaluation.ips`.
    action_dist, estimated_rewards, position
        As in :func:`~bandit_engine.evaluation.dm`.
    clip
        Upper bound on the weights in the correction term (``None``: none).
    level, ci, n_bootstrap, seed
        As in :func:`~bandit_engine.evaluation.ips`.

    Returns
    -------
    Estimate
        ``extra["dm"]`` is the model term, ``extra["correction"]`` the weighted residual term.
    """
    check_ci(ci, n_bootstrap)
    acc = DRAccumulator(clip=clip, level=level)
    batch = acc.row_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        estimated_rewards=estimated_rewards,
        position=position,
    )
    return run_in_memory(acc, batch, ci=ci, n_bootstrap=n_bootstrap, seed=seed)
