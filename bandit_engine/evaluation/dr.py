"""Doubly robust (DR) estimator.

The in-memory function :func:`dr` and its streaming accumulator :class:`DRAccumulator` (chunks in
with ``update``, the estimate out with ``result``); the function pushes one batch through the
accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ValidationError
from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray, LoggedRows, as_float_1d, check_clip, pick, validate_rows
from .dm import dm_terms
from .intervals import check_ci
from .streaming import OPEAccumulator, TermBatch, clip_weights, run_in_memory
from .support import SupportStats

__all__ = ["DRAccumulator", "DRFamily", "dr"]


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


# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------


def _q_logged(rows: LoggedRows) -> FloatArray:
    assert rows.qhat is not None
    return pick(rows.qhat, rows.action)


class DRFamily(OPEAccumulator):
    """Shared input handling of DR, SNDR and Switch-DR, and the DR value
    ``mean(dm_i) + mean(w_i residual_i)`` that DR and Switch-DR share (they differ only in how
    the weights are capped: :meth:`_weights`)."""

    def _weights(self, w: FloatArray) -> tuple[FloatArray, int, float]:
        raise NotImplementedError

    def _family_terms(self, dm: FloatArray, w: FloatArray, residual: FloatArray) -> FloatArray:
        return np.stack((dm, w * residual))

    def value_of(self, means: FloatArray) -> FloatArray:
        out: FloatArray = means[..., 0] + means[..., 1]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        return np.ones(2)

    def row_terms(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        position: ArrayLike | None = None,
    ) -> TermBatch:
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=action_dist,
            position=position,
            estimated_rewards=estimated_rewards,
            need_pscore=True,
            need_qhat=True,
        )
        return self._batch(rows, dm_terms(rows), _q_logged(rows))

    def _batch(self, rows: LoggedRows, dm: FloatArray, q_logged: FloatArray) -> TermBatch:
        """The chunk's terms from its checked rows, model values and ``qhat`` at the logged
        actions."""
        assert rows.pi is not None and rows.pscore is not None
        support = SupportStats.of(rows.pi, rows.pscore)
        w, n_clipped, max_raw = self._weights(rows.weight)
        terms = self._family_terms(dm, w, rows.reward - q_logged)
        return TermBatch(terms, w, max_raw, n_clipped, rows.n, support)

    def update(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        position: ArrayLike | None = None,
    ) -> None:
        """Add a chunk (same arrays as :func:`~bandit_engine.evaluation.dr`)."""
        self.push(
            self.row_terms(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                estimated_rewards=estimated_rewards,
                position=position,
            )
        )

    def reduced_terms(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_prob: ArrayLike,
        model_value: ArrayLike,
        estimated_reward: ArrayLike,
    ) -> TermBatch:
        """The terms of a chunk given per row instead of per (row, action).

        The estimator needs three numbers of each row's (K,) vectors ``pi(. | x_i)`` and
        ``qhat(x_i, .)``: ``action_prob`` ``pi(a_i | x_i)``, ``model_value``
        ``sum_a pi(a | x_i) qhat(x_i, a)`` and ``estimated_reward`` ``qhat(x_i, a_i)``, all (n,).
        A caller that computes the policy in small blocks can reduce each block to them at once,
        so no (n, K) array outlives a block (the blocks stay in the core's cache). The caller
        answers for ``pi`` being a distribution: only ``action_prob`` in [0, 1] is checked here.
        """
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            pscore=pscore,
            action_prob=action_prob,
            need_pscore=True,
            allow_action_prob=True,
        )
        dm = as_float_1d("model_value", model_value)
        q_logged = as_float_1d("estimated_reward", estimated_reward)
        for name, arr in (("model_value", dm), ("estimated_reward", q_logged)):
            if arr.shape[0] != rows.n:
                raise ValidationError(
                    f"{name} must have shape (n,) = ({rows.n},) like action, got shape {arr.shape}",
                    field=name,
                    value=arr.shape,
                )
        return self._batch(rows, dm, q_logged)

    def update_reduced(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_prob: ArrayLike,
        model_value: ArrayLike,
        estimated_reward: ArrayLike,
    ) -> None:
        """Add a chunk given per row (:meth:`reduced_terms`); the same estimate as
        :meth:`update` with the (n, K) arrays those rows reduce from."""
        self.push(
            self.reduced_terms(
                reward=reward,
                action=action,
                pscore=pscore,
                action_prob=action_prob,
                model_value=model_value,
                estimated_reward=estimated_reward,
            )
        )

    def _extra(self, means: FloatArray) -> dict[str, float]:
        return {"dm": float(means[0]), "correction": float(self.value_of(means) - means[0])}


class DRAccumulator(DRFamily):
    """Doubly robust: ``mean(dm_i + min(w_i, clip) * (r_i - qhat(x_i, a_i)))``."""

    estimator: ClassVar[str] = "dr"
    term_names: ClassVar[tuple[str, ...]] = ("dm", "w_residual")
    merge_settings: ClassVar[tuple[str, ...]] = ("level", "_clip")

    def __init__(self, *, clip: float | None = None, level: float = 0.95) -> None:
        super().__init__(level=level)
        self.clip = clip
        self._clip = check_clip("clip", clip)

    def _weights(self, w: FloatArray) -> tuple[FloatArray, int, float]:
        return clip_weights(w, self._clip)
