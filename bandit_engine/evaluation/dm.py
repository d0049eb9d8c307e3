"""Direct method (DM): the reward model's prediction under the evaluated policy.

The in-memory function :func:`dm` and its streaming accumulator :class:`DMAccumulator` (chunks in
with ``update``, the estimate out with ``result``); the function pushes one batch through the
accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray, LoggedRows, check_finite_terms, validate_rows
from .intervals import check_ci
from .streaming import OPEAccumulator, TermBatch, run_in_memory

__all__ = ["DMAccumulator", "dm", "dm_terms"]


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


# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------


def dm_terms(rows: LoggedRows) -> FloatArray:
    """(n,) model value ``sum_a pi(a | x_i) qhat(x_i, a)`` of every row (checked finite)."""
    assert rows.dist is not None and rows.qhat is not None
    dm = np.einsum("ij,ij->i", rows.dist, rows.qhat)
    check_finite_terms("estimated_rewards", dm, rows.qhat)
    out: FloatArray = dm
    return out


class DMAccumulator(OPEAccumulator):
    """Direct method: ``mean_i sum_a pi(a | x_i) qhat(x_i, a)``; no propensities needed."""

    estimator: ClassVar[str] = "dm"
    term_names: ClassVar[tuple[str, ...]] = ("dm",)
    uses_weights: ClassVar[bool] = False

    def row_terms(
        self,
        *,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        reward: ArrayLike | None = None,
        action: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> TermBatch:
        if action is None:
            # DM never looks at the logged action; a placeholder keeps the shared checks.
            n = int(np.shape(action_dist)[0]) if np.ndim(action_dist) >= 1 else 0
            action = np.zeros(n, dtype=np.int64)
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            action_dist=action_dist,
            position=position,
            estimated_rewards=estimated_rewards,
            need_pscore=False,
            need_qhat=True,
        )
        return TermBatch(dm_terms(rows)[None, :], None, float("nan"), 0, rows.n)

    def update(
        self,
        *,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        reward: ArrayLike | None = None,
        action: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> None:
        """Add a chunk (same arrays as :func:`~bandit_engine.evaluation.dm`)."""
        self.push(
            self.row_terms(
                action_dist=action_dist,
                estimated_rewards=estimated_rewards,
                reward=reward,
                action=action,
                position=position,
            )
        )
