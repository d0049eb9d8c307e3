"""Context-free baselines and control-group policies.

:class:`UniformRandom`, :class:`EpsilonGreedy`, :class:`Popularity` and :class:`FixedRule` ignore
the user context ``x`` (it is only checked for shape, so they can be swapped for any other
policy). They keep per-arm counts and reward sums, which also serve as reporting data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ValidationError
from ..records import Choice
from ._arms import ArmTable
from ._arrays import BoolArray, FloatArray, IntArray, grow_rows, state_array
from ._checks import (
    SeedLike,
    check_choice,
    check_finite,
    check_in_range,
    check_int,
    check_positive,
)
from ._mask import mask_scores
from ._ties import argmax_choice, argmax_distribution
from .base import BasePolicy

__all__ = ["EpsilonGreedy", "FixedRule", "Popularity", "UniformRandom"]


class _ArmStatsPolicy(BasePolicy):
    """Per-arm counts and reward sums; subclasses define the values they rank arms by."""

    epsilon: float = 0.0

    def __init__(self, *, seed: SeedLike) -> None:
        super().__init__(seed=seed)
        self.arms_ = ArmTable()
        self.count_: NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self.reward_sum_: FloatArray = np.zeros(1)

    # -- per-arm storage (row len(arms_) is a spare row holding a fresh arm's values) ---------
    def _grow(self, n_arms: int) -> None:
        self.count_ = grow_rows(self.count_, n_arms + 1, 0)
        self.reward_sum_ = grow_rows(self.reward_sum_, n_arms + 1, 0.0)

    def _rows(self, arms: Sequence[str]) -> tuple[IntArray, bool]:
        rows, contiguous, n_new = self.arms_.rows(arms)
        if n_new:
            self._grow(len(self.arms_))
        return rows, contiguous

    def _values(self, rows: IntArray, contiguous: bool, Z: FloatArray) -> FloatArray:
        """What arms are ranked by (higher is better), one per candidate (a fresh array)."""
        raise NotImplementedError

    def _learn(self, row: int, reward: float) -> None:
        """Subclass hook called after the counts of ``row`` were updated."""

    # -- protocol ---------------------------------------------------------------------------
    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        _, Z = self._check_inputs(x, arms, arm_features)
        rows, contiguous = self._rows(arms)
        scores = self._values(rows, contiguous, Z)
        index, propensity, probs = argmax_choice(scores, self.rng_, self.epsilon, keep)
        return Choice(
            index, propensity, scores if keep is None else mask_scores(scores, keep), probs
        )

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray | None:
        """The exact choice distribution (argmax, uniform ties, epsilon mixing); consumes no
        randomness and creates no arm."""
        keep = self._keep(mask, arms)
        _, Z = self._check_inputs(x, arms, arm_features)
        rows = self.arms_.lookup(arms, missing=len(self.arms_))
        return argmax_distribution(self._values(rows, False, Z), self.epsilon, keep)

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """The ranking values of :meth:`choose` (they do not depend on ``x``): ``(n, k)``."""
        X, Z = self._check_batch(X, arms, arm_features)
        rows = self.arms_.lookup(arms, missing=len(self.arms_))
        values = self._values(rows, False, Z)
        return np.broadcast_to(values, (X.shape[0], values.shape[0])).copy()

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Count the observation for ``arm``. ``propensity`` is validated but unused."""
        _, _, r = self._check_update(x, arm, arm_features, reward, propensity)
        row, created = self.arms_.row(arm)
        if created:
            self._grow(len(self.arms_))
        self.count_[row] += 1
        self.reward_sum_[row] += r
        self._learn(row, r)
        self.n_updates_ += 1

    # -- state ------------------------------------------------------------------------------
    def _extra_state(self, n: int) -> dict[str, Any]:
        return {}

    def _set_extra_state(self, state: Mapping[str, Any], n: int) -> None:
        """Validate and restore subclass arrays (called after counts are restored)."""

    def _learned_state(self) -> dict[str, Any]:
        n = len(self.arms_)
        state: dict[str, Any] = {
            "arms": list(self.arms_.ids),
            "count": self.count_[:n].copy(),
            "reward_sum": self.reward_sum_[:n].copy(),
        }
        state.update(self._extra_state(n))
        return state

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        table = ArmTable.from_state(state)
        n = len(table)
        count = state_array(state, "count", (n,), np.int64)
        reward_sum = state_array(state, "reward_sum", (n,))
        if np.any(count < 0):
            raise ValidationError.for_field("state.count", count.tolist(), "must be >= 0")
        saved = (self.arms_, self.count_, self.reward_sum_)
        self.arms_, self.count_, self.reward_sum_ = table, count, reward_sum
        try:
            self._grow(n)
            self._set_extra_state(state, n)
        except BaseException:
            self.arms_, self.count_, self.reward_sum_ = saved
            raise


class UniformRandom(_ArmStatsPolicy):
    """Chooses uniformly among the candidates: propensity ``1/k`` for every arm.

    The cleanest control group and the best logging policy for off-policy evaluation (every
    candidate has positive probability). It learns nothing; ``update`` only counts.
    ``Choice.scores`` and :meth:`score_batch` are zeros (no preference).

    Parameters
    ----------
    seed
        Seed or ``numpy.random.Generator``.
    """

    name = "uniform"
    _param_names = ()

    def __init__(self, *, seed: SeedLike = None) -> None:
        super().__init__(seed=seed)

    def _values(self, rows: IntArray, contiguous: bool, Z: FloatArray) -> FloatArray:
        return np.zeros(rows.shape[0])

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        self._check_inputs(x, arms, arm_features)
        self._rows(arms)
        k = len(arms)
        if keep is not None:  # uniform over the kept arms, the same draw as on the sub-list
            n = keep.shape[0]
            probs = np.zeros(k)
            probs[keep] = 1.0 / n
            return Choice(
                int(keep[self.rng_.integers(n)]), 1.0 / n, mask_scores(np.zeros(k), keep), probs
            )
        index = int(self.rng_.integers(k))
        return Choice(index, 1.0 / k, np.zeros(k), np.full(k, 1.0 / k))

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray:
        keep = self._keep(mask, arms)
        self._check_inputs(x, arms, arm_features)
        self.arms_.lookup(arms, missing=0)  # validates the ids
        if keep is not None:
            probs = np.zeros(len(arms))
            probs[keep] = 1.0 / keep.shape[0]
            return probs
        return np.full(len(arms), 1.0 / len(arms))


class EpsilonGreedy(_ArmStatsPolicy):
    """Context-free epsilon-greedy on per-arm mean rewards.

    Each arm's value is its (optionally discounted) mean reward
    ``sum_i g^(n-i) r_i / sum_i g^(n-i)`` over its own updates, or ``initial_value`` before the
    first one. With probability ``1 - epsilon`` the best value is chosen (ties uniformly),
    otherwise a uniformly random candidate: ``pi(a) = (1 - epsilon) [a in T] / |T| +
    epsilon / k`` exactly (see :func:`~bandit_engine.policies.base.argmax_distribution`).

    Parameters
    ----------
    epsilon
        Exploration probability in ``[0, 1]``.
    initial_value
        Value of an arm with no update yet; set it above the typical reward to make every new
        bundle tried once ("optimistic initial values").
    discount
        Optional factor in (0, 1) that down-weights old rewards of an arm at each of its
        updates, for drifting preferences. ``None`` is the plain running mean.
    seed
        Seed or ``numpy.random.Generator``.
    """

    name = "epsilon_greedy"
    _param_names = ("epsilon", "initial_value", "discount")

    def __init__(
        self,
        *,
        epsilon: float = 0.1,
        initial_value: float = 0.0,
        discount: float | None = None,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.initial_value = check_finite("initial_value", initial_value)
        self.discount = (
            None
            if discount is None
            else check_in_range("discount", discount, 0.0, 1.0, low_open=True, high_open=True)
        )
        self.weight_: FloatArray = np.zeros(1)
        self.weighted_sum_: FloatArray = np.zeros(1)
        self.value_: FloatArray = np.full(1, self.initial_value)

    def _grow(self, n_arms: int) -> None:
        super()._grow(n_arms)
        self.weight_ = grow_rows(self.weight_, n_arms + 1, 0.0)
        self.weighted_sum_ = grow_rows(self.weighted_sum_, n_arms + 1, 0.0)
        self.value_ = grow_rows(self.value_, n_arms + 1, self.initial_value)

    def _values(self, rows: IntArray, contiguous: bool, Z: FloatArray) -> FloatArray:
        return self.value_[: rows.shape[0]].copy() if contiguous else self.value_[rows]

    def _learn(self, row: int, reward: float) -> None:
        g = 1.0 if self.discount is None else self.discount
        self.weight_[row] = g * self.weight_[row] + 1.0
        self.weighted_sum_[row] = g * self.weighted_sum_[row] + reward
        self.value_[row] = self.weighted_sum_[row] / self.weight_[row]

    def _extra_state(self, n: int) -> dict[str, Any]:
        return {"weight": self.weight_[:n].copy(), "weighted_sum": self.weighted_sum_[:n].copy()}

    def _set_extra_state(self, state: Mapping[str, Any], n: int) -> None:
        weight = state_array(state, "weight", (n,))
        weighted_sum = state_array(state, "weighted_sum", (n,))
        if np.any(weight < 0):
            raise ValidationError.for_field("state.weight", weight.tolist(), "must be >= 0")
        value = np.full(n, self.initial_value)
        np.divide(weighted_sum, weight, out=value, where=weight > 0)
        self.weight_, self.weighted_sum_, self.value_ = weight, weighted_sum, value
        self._grow(n)


class Popularity(_ArmStatsPolicy):
    """Control group "most popular": ranks bundles by their smoothed mean reward (or total).

    ``by="mean"`` (default): ``(reward_sum + prior_mean * prior_weight) / (count +
    prior_weight)``, i.e. the mean reward shrunk towards ``prior_mean`` as if each arm had
    ``prior_weight`` pseudo-observations; with click rewards this is a smoothed click-through
    rate. ``by="total"``: the total reward (the click or order count when rewards are 0/1),
    which favours bundles that were shown more and is what "best sellers" lists usually do.

    The popularity is learned from this policy's own ``update`` calls only (its control
    group's traffic). Near-deterministic: with ``epsilon = 0`` the top bundle is chosen with
    probability 1 (ties uniformly), so a new bundle is only tried if its prior value beats the
    incumbents; and logs of it cannot evaluate other policies. ``epsilon > 0`` mixes in uniform
    choices, with ``pi`` exactly as in
    :func:`~bandit_engine.policies.base.argmax_distribution`.

    Parameters
    ----------
    epsilon
        Exploration probability in ``[0, 1]``.
    prior_mean
        Value the smoothed mean shrinks towards (``by="mean"``).
    prior_weight
        Number of pseudo-observations of ``prior_mean`` (``>= 0``).
    by
        ``"mean"`` or ``"total"``.
    seed
        Seed or ``numpy.random.Generator``.
    """

    name = "popularity"
    _param_names = ("epsilon", "prior_mean", "prior_weight", "by")

    def __init__(
        self,
        *,
        epsilon: float = 0.0,
        prior_mean: float = 0.0,
        prior_weight: float = 1.0,
        by: str = "mean",
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.prior_mean = check_finite("prior_mean", prior_mean)
        self.prior_weight = check_positive("prior_weight", prior_weight, allow_zero=True)
        self.by = check_choice("by", by, ("mean", "total"))
        self.value_: FloatArray = np.full(1, self._fresh_value())

    def _fresh_value(self) -> float:
        return self.prior_mean if self.by == "mean" else 0.0

    def _grow(self, n_arms: int) -> None:
        super()._grow(n_arms)
        self.value_ = grow_rows(self.value_, n_arms + 1, self._fresh_value())

    def _value_of(self, count: float, reward_sum: float) -> float:
        if self.by == "total":
            return reward_sum
        denom = count + self.prior_weight
        if denom == 0.0:
            return self.prior_mean
        return (reward_sum + self.prior_mean * self.prior_weight) / denom

    def _values(self, rows: IntArray, contiguous: bool, Z: FloatArray) -> FloatArray:
        return self.value_[: rows.shape[0]].copy() if contiguous else self.value_[rows]

    def _learn(self, row: int, reward: float) -> None:
        self.value_[row] = self._value_of(float(self.count_[row]), float(self.reward_sum_[row]))

    def _set_extra_state(self, state: Mapping[str, Any], n: int) -> None:
        value = np.array(
            [
                self._value_of(float(c), float(s))
                for c, s in zip(self.count_, self.reward_sum_, strict=True)
            ]
        )
        self.value_ = value
        self._grow(n)


class FixedRule(_ArmStatsPolicy):
    """A fixed business rule: rank candidates by one column of ``arm_features``.

    The rule never learns (``update`` only counts, for reports). ``column=None`` keeps the
    order in which the candidates are passed (the first candidate wins), e.g. an editorial
    order from the catalog; otherwise candidates are ranked by that column, largest first when
    ``descending`` (e.g. the discount column), smallest first otherwise. Ties are broken uniformly
    at random, and ``epsilon`` mixes in uniform choices, so ``pi`` is exactly
    :func:`~bandit_engine.policies.base.argmax_distribution` of the rule's values. The rule is
    data (a column index or name), never a callable, so it serialises to JSON.

    A column given by name (``"deal.discount"``, one of the catalog's ``feature_names``) is kept
    as the name, saved as the name, and found in the bundle rows by :meth:`bind_feature_names`,
    which an :class:`~bandit_engine.Engine` calls when it is built or loaded (and ``bandit
    evaluate --catalog ENGINE`` for a log). Choosing before the names are known is a
    :class:`~bandit_engine.errors.ConfigError` saying so.

    Parameters
    ----------
    column
        Index of the ranking column of ``arm_features`` (``>= 0``), its name, or ``None``.
    descending
        Prefer large values of the column.
    epsilon
        Exploration probability in ``[0, 1]``.
    seed
        Seed or ``numpy.random.Generator``.
    """

    name = "fixed_rule"
    _param_names = ("column", "descending", "epsilon")

    def __init__(
        self,
        *,
        column: int | str | None = None,
        descending: bool = True,
        epsilon: float = 0.0,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.column: int | str | None
        self._index: int | None
        if isinstance(column, str):
            if not column.strip():
                raise ConfigError.for_field("column", column, "must be a feature name or an index")
            self.column, self._index = column, None
        else:
            self.column = None if column is None else check_int("column", column, minimum=0)
            self._index = self.column
        if not isinstance(descending, bool | np.bool_):
            raise ConfigError.for_field("descending", descending, "must be True or False")
        self.descending = bool(descending)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)

    def bind_feature_names(self, names: Sequence[str]) -> None:
        """Find a named ``column`` among the bundle feature ``names`` (the catalog's
        ``feature_names``, in the order of the ``arm_features`` columns). An unknown name is a
        :class:`~bandit_engine.errors.ConfigError` listing the numeric columns and the nearest
        names; an index column is left as it is."""
        if not isinstance(self.column, str):
            return
        names = list(names)
        if self.column not in names:
            import difflib

            plain = [n for n in names if "=" not in n]
            near = difflib.get_close_matches(self.column, names, n=3)
            hint = f"; did you mean {near}?" if near else ""
            raise ConfigError.for_field(
                "fixed_rule.column",
                self.column,
                f"must be a bundle feature name (numeric ones: {plain}; one-hot ones look like "
                f"'deal.cuisine=hotpot'){hint}",
            )
        self._index = names.index(self.column)

    def _extra_state(self, n: int) -> dict[str, Any]:
        # a named column's place travels with the state, so a copy (offline evaluation) and a
        # loaded engine rank by the same column before anything binds the names again
        return {"column_index": self._index} if isinstance(self.column, str) else {}

    def _set_extra_state(self, state: Mapping[str, Any], n: int) -> None:
        if isinstance(self.column, str) and state.get("column_index") is not None:
            self._index = check_int("state.column_index", state["column_index"], minimum=0)

    @property
    def feature_names_needed(self) -> bool:
        """Whether the column is a name not yet found (:meth:`bind_feature_names`)."""
        return isinstance(self.column, str) and self._index is None

    def _init_dims(self, d: int, p: int) -> None:
        if isinstance(self.column, int) and self.column >= p:
            raise ValidationError.for_field(
                "arm_features",
                f"{p} columns",
                f"must have more than column={self.column} columns",
            )

    def _values(self, rows: IntArray, contiguous: bool, Z: FloatArray) -> FloatArray:
        if self.column is None:
            return -np.arange(rows.shape[0], dtype=np.float64)
        j = self._index
        if j is None:
            raise ConfigError.for_field(
                "fixed_rule.column",
                self.column,
                "names a bundle feature, but this policy was not told the bundle feature names: "
                "use it in an Engine (which tells it), pass --catalog ENGINE to bandit evaluate, "
                "call bind_feature_names(catalog.feature_names), or give a column index",
            )
        if j >= Z.shape[1]:
            raise ValidationError.for_field(
                "arm_features", f"{Z.shape[1]} columns", f"must have the column {self.column!r}"
            )
        col = Z[:, j]
        values = col.copy() if self.descending else -col
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValidationError.for_field(
                f"arm_features[{bad}, {self.column}]", float(col[bad]), "must be finite"
            )
        return values
