"""Inverse propensity scoring (IPS), optionally with clipped weights.

The in-memory function :func:`ips` and its streaming accumulator :class:`IPSAccumulator` (chunks in
with ``update``, the estimate out with ``result``); the function pushes one batch through the
accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray, check_clip, validate_rows
from .intervals import check_ci
from .streaming import OPEAccumulator, TermBatch, clip_weights, run_in_memory
from .support import SupportStats

__all__ = ["IPSAccumulator", "ips"]


def ips(
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
    """Estimate the evaluated policy's mean reward by inverse propensity scoring.

    ``value = mean_i min(w_i, clip) * reward_i`` with ``w_i = pi(action_i | x_i) / pscore_i``.
    Unbiased without clipping when every action the evaluated policy can take had a positive
    logging propensity; clipping trades bias for variance (``clipped_share`` reports how often).

    Parameters
    ----------
    reward, action, pscore
        (n,) logged rewards, logged action indices, logging propensities of the logged actions,
        in (0, 1]. Rows with a missing (NaN) pscore are refused (use :func:`dm`).
    action_dist
        (n, K) evaluated policy's probability of every action on each row, or (n, K, L) per
        position with ``position`` (n,) in [0, L).
    action_prob
        (n,) evaluated policy's probability of the logged action only; replaces ``action_dist``
        (exactly one of the two) so very large logs need no (n, K) matrix.
    position
        (n,) 0-based positions. The value is the average over all logged rows, positions pooled
        (as the Open Bandit Pipeline does); use :func:`per_position` for one value per position.
    clip
        Upper bound on the weights (``None``: no clipping).
    level, ci, n_bootstrap, seed
        Interval level; ``"normal"`` (``value -/+ z se``) or ``"bootstrap"`` (percentile, seeded).

    Returns
    -------
    Estimate
        With ``ess``, ``max_weight`` and ``clipped_share`` computed on the clipped weights and
        ``extra["max_raw_weight"]`` the largest weight before clipping.
    """
    check_ci(ci, n_bootstrap)
    acc = IPSAccumulator(clip=clip, level=level)
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


class IPSAccumulator(OPEAccumulator):
    """Inverse propensity scoring, optionally with weights clipped at ``clip``.

    Value: ``mean(min(w, clip) * r)`` with ``w = pi(a_i | x_i) / pscore_i``.
    """

    estimator: ClassVar[str] = "ips"
    term_names: ClassVar[tuple[str, ...]] = ("w_r",)
    merge_settings: ClassVar[tuple[str, ...]] = ("level", "_clip")

    def __init__(self, *, clip: float | None = None, level: float = 0.95) -> None:
        super().__init__(level=level)
        self.clip = clip
        self._clip = check_clip("clip", clip)

    def row_terms(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike | None = None,
        action_prob: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> TermBatch:
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=action_dist,
            action_prob=action_prob,
            position=position,
            need_pscore=True,
            allow_action_prob=True,
        )
        assert rows.pi is not None and rows.pscore is not None
        support = SupportStats.of(rows.pi, rows.pscore)
        w, n_clipped, max_raw = clip_weights(rows.weight, self._clip)
        return TermBatch(self._terms(w, rows.reward), w, max_raw, n_clipped, rows.n, support)

    def _terms(self, w: FloatArray, r: FloatArray) -> FloatArray:
        return (w * r)[None, :]

    def update(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike | None = None,
        action_prob: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> None:
        """Add a chunk of logged rows (same arrays as :func:`~bandit_engine.evaluation.ips`)."""
        self.push(
            self.row_terms(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                action_prob=action_prob,
                position=position,
            )
        )
