"""The base of the policies that keep one ridge regression per arm on the context ``x``.

Disjoint LinUCB and disjoint linear Thompson sampling differ only in how they turn the
regressions' ``(mean, variance)`` into a choice; the arm bookkeeping, learning, batch scoring and
state are here, over a :class:`~bandit_engine.policies._packed.PackedRows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ValidationError
from ._arms import ArmTable
from ._arrays import FloatArray, IntArray
from ._checks import SeedLike, check_choice, check_positive
from ._packed import PRECISIONS, PackedRows
from ._ridge import check_forgetting
from .base import BasePolicy
from .explain import ArmEstimates
from .scale import RewardMoments

__all__ = ["RidgeArmsPolicy"]


class RidgeArmsPolicy(BasePolicy):
    """Base of the policies that keep one :class:`RidgeRows` row per arm on the context ``x``
    (disjoint LinUCB, disjoint linear Thompson sampling): arm bookkeeping, learning, batch
    scoring and state. ``arm_features`` are only checked for shape."""

    def __init__(
        self,
        *,
        l2: float,
        discount: float | None,
        window: int | None,
        seed: SeedLike,
        precision: str = "float64",
    ) -> None:
        super().__init__(seed=seed)
        self.l2 = check_positive("l2", l2)
        self.discount, self.window = check_forgetting(discount, window)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.arms_ = ArmTable()
        self.ridge_: PackedRows | None = None
        # running moments of the learned rewards: the "auto" exploration scale (policies/scale.py)
        self.moments_ = RewardMoments()

    def _new_ridge(self, d: int) -> PackedRows:
        return PackedRows(
            d, self.l2, discount=self.discount, window=self.window, precision=self.precision
        )

    def _init_dims(self, d: int, p: int) -> None:
        self.ridge_ = self._new_ridge(d)

    def _prepare(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, PackedRows, IntArray]:
        """Validate a decision, create unseen arms; returns ``(x, ridge, rows)``."""
        x, _ = self._check_inputs(x, arms, arm_features)
        rows, _, n_new = self.arms_.rows(arms)
        ridge = self.ridge_
        assert ridge is not None
        if n_new:
            ridge.ensure_rows(len(self.arms_))
        return x, ridge, rows

    #: What :meth:`explain_arms` reports as the exploration term (subclasses name theirs).
    _spread_kind = "exploration bonus"

    def _spread(self, q: FloatArray) -> FloatArray:
        """The exploration term from the widths ``q = x' A_a^{-1} x`` (a subclass hook)."""
        raise NotImplementedError

    def explain_arms(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> ArmEstimates:
        """Each candidate's estimate ``theta_a . x`` (``x_coef = theta_a``) and exploration term
        (:mod:`~bandit_engine.policies.explain`); changes nothing (unseen arms: the prior)."""
        x, _ = self._check_inputs(x, arms, arm_features)
        ridge = self.ridge_
        assert ridge is not None
        rows = self.arms_.lookup(arms, missing=ridge.n_rows)
        ridge.ensure_rows(len(self.arms_))
        m, q = ridge.mean_var(x, rows)
        return ArmEstimates(m, self._spread(q), self._spread_kind, x_coef=ridge.theta[rows].copy())

    def _lookup(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, PackedRows, IntArray]:
        """Like :meth:`_prepare` but read-only: unseen arms are scored from the prior row."""
        x, _ = self._check_inputs(x, arms, arm_features)
        ridge = self.ridge_
        assert ridge is not None
        return x, ridge, self.arms_.lookup(arms, missing=ridge.n_rows)

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Add ``(x, reward)`` to ``arm``'s regression. ``propensity`` is validated but unused:
        the policy learns the reward of what it was shown, which needs no reweighting."""
        x, _, r = self._check_update(x, arm, arm_features, reward, propensity)
        ridge = self.ridge_
        assert ridge is not None
        row, created = self.arms_.row(arm)
        if created:
            ridge.ensure_rows(len(self.arms_))
        ridge.update(row, x, r)
        self.moments_.add(r)
        self.n_updates_ += 1

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Estimated mean rewards ``theta_a . x`` for every row of ``X`` and arm: ``(n, k)``."""
        X, _ = self._check_batch(X, arms, arm_features)
        ridge = self.ridge_
        assert ridge is not None
        return ridge.means(X, self.arms_.lookup(arms, missing=ridge.n_rows))

    def _learned_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"arms": list(self.arms_.ids)}
        if self.ridge_ is not None:
            state.update(self.ridge_.get_state())
        state["reward_moments"] = self.moments_.to_list()
        return state

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        self.moments_ = RewardMoments.from_state(state)
        table = ArmTable.from_state(state)
        ridge = None
        if self.n_features_ is not None:
            ridge = self._new_ridge(self.n_features_)
            ridge.set_state(state, len(table))
        elif len(table):
            raise ValidationError.for_field("state.n_features", None, "must be set when arms exist")
        self.arms_, self.ridge_ = table, ridge
