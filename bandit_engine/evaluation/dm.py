"""Direct method (DM): the reward model's prediction under the evaluated policy."""

from __future__ import annotations

from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from .intervals import check_ci
from .streaming import DMAccumulator, run_in_memory

__all__ = ["dm"]


def dm(
    *,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    reward: ArrayLike | None = None,
    action: ArrayLike | None = None,
    position: ArrayLike | None = None,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
) -> Estimate:
    """Estimate the evaluated policy's mean reward with a reward model.

    ``value = mean_i sum_a action_dist[i, a] * estimated_rewards[i, a]``. Needs no propensities,
    so it is the estimator for logs without them; it is as good as the reward model (biased when
    the model is), and its interval reflects only the spread over contexts, not model error.

    Parameters
    ----------
    action_dist
        (n, K) or (n, K, L) evaluated policy (with ``position`` for (n, K, L)).
    estimated_rewards
        (n, K) or (n, K, L) predicted rewards of every action on each row, ideally cross-fitted
        (:func:`~bandit_engine.evaluation.cross_fit_rewards`).
    reward, action
        Optional (n,) logged rewards and actions; only validated (shapes, ranges), not used.
    position
        (n,) 0-based positions; the value averages over rows, positions pooled.
    level, ci, n_bootstrap, seed
        As in :func:`~bandit_engine.evaluation.ips`.

    Returns
    -------
    Estimate
        ``ess`` and ``max_weight`` are ``nan``: DM uses no importance weights.
    """
    check_ci(ci, n_bootstrap)
    acc = DMAccumulator(level=level)
    batch = acc.row_terms(
        action_dist=action_dist,
        estimated_rewards=estimated_rewards,
        reward=reward,
        action=action,
        position=position,
    )
    return run_in_memory(acc, batch, ci=ci, n_bootstrap=n_bootstrap, seed=seed)
