"""The :class:`Policy` protocol and :class:`BasePolicy`, the plumbing every policy shares.

A policy sees, for one decision, a context vector ``x`` (shape ``(d,)``), the ids of the candidate
arms (bundles) and their feature rows ``arm_features`` (shape ``(k, p)``). It returns a
:class:`~bandit_engine.records.Choice`: the position of the chosen arm, the probability with which
it was chosen, and one score per candidate. It learns from ``update(x, arm, arm_features_row,
reward, propensity)``. Arms are identified by string ids; a policy creates the state of an arm the
first time it sees its id, so bundles added at run time need no registration and retired bundles
keep what they taught (they are merely no longer offered).

State is plain data (numpy arrays, numbers, strings, lists and dicts) so that an engine can be
saved without pickle and restored exactly, random generator included.

Policies are not thread-safe: some reuse scratch buffers between calls, so an engine must
serialise calls to one policy object.

The helpers live beside this module, one job each: :mod:`._checks` (hyperparameters, seeding),
:mod:`._arrays` (aligned storage, validated state arrays), :mod:`._ties` (argmax with its exact
distribution), :mod:`._arms` (arm ids to rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import numpy as np

from ..errors import ValidationError
from ..records import Choice, PairChoice, PairGrid
from ._arrays import BoolArray, FloatArray, IntArray
from ._checks import (
    SeedLike,
    check_choice,
    check_finite,
    check_in_range,
    check_int,
    check_positive,
    is_real,
    make_rng,
)
from ._mask import check_mask, widen_choice, widen_probabilities

# The names after Policy and BasePolicy are re-exported for the modules outside policies/ that
# import them from here (evaluation, simulation); inside policies/ each comes from its own module.
__all__ = [
    "BasePolicy",
    "BoolArray",
    "FloatArray",
    "GridPolicy",
    "IntArray",
    "Policy",
    "SeedLike",
    "check_choice",
    "check_finite",
    "check_in_range",
    "check_int",
    "check_positive",
    "make_rng",
]

_BIT_GENERATORS: dict[str, type[np.random.BitGenerator]] = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
    "MT19937": np.random.MT19937,
}
_F64 = np.dtype(np.float64)


@runtime_checkable
class Policy(Protocol):
    """What every policy implements (LinUCB, Thompson sampling, baselines, Vowpal Wabbit)."""

    name: ClassVar[str]
    n_updates_: int

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        """Choose one of ``arms`` for context ``x``; ``arm_features[i]`` describes ``arms[i]``.

        ``mask`` (boolean, one per arm, at least one ``True``): only the arms it keeps may be
        chosen. The choice has the distribution of ``choose`` on the sub-list ``arms[mask]``
        (the propensity is over the kept arms), reported as a position in ``arms``; masked-out
        arms get score ``-inf`` and probability 0 (:mod:`._mask`). Passing the same full list
        with a per-decision mask lets a policy keep its per-list caches."""
        ...

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Learn that showing ``arm`` (features ``arm_features``, shape ``(p,)``) in ``x`` paid
        ``reward``."""
        ...

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray | None:
        """The exact distribution of ``choose`` over ``arms`` (no randomness consumed), or ``None``
        when the policy can only be sampled; with ``mask``, that of the masked ``choose``."""
        ...

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Deterministic scores (estimated mean reward) for every (row of ``X``, arm):
        ``(n, k)``."""
        ...

    def get_params(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-compatible)."""
        ...

    def get_state(self) -> dict[str, Any]:
        """Learned state and random generator state as plain data."""
        ...

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""
        ...


@runtime_checkable
class GridPolicy(Protocol):
    """What a grid policy implements: it chooses among every (deal, course) pair of a
    :class:`~bandit_engine.records.PairGrid` without a row per pair
    (:mod:`bandit_engine.policies.factored`)."""

    name: ClassVar[str]
    n_updates_: int

    def choose_grid(self, grid: PairGrid) -> PairChoice:
        """Choose a pair of ``grid``, with its exact propensity."""
        ...

    def update_pair(
        self,
        deal_id: str,
        course_id: str,
        deal_row: FloatArray,
        course_row: FloatArray,
        deal_cell: int,
        course_cell: int,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Learn ``reward`` for the pair shown (its rows and cell as in the grid)."""
        ...

    def get_params(self) -> dict[str, Any]: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: Mapping[str, Any]) -> None: ...


class BasePolicy:
    """Shared plumbing: seeding, parameter access, input checks, state of the random generator.

    Subclasses set ``name``, keep hyperparameters as attributes named like their keyword
    arguments, list those names in ``_param_names`` and store learned state in attributes
    ending with ``_``.
    """

    name: ClassVar[str] = "base"
    _param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, seed: SeedLike = None) -> None:
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        self.rng_ = make_rng(seed)
        self.n_updates_ = 0
        self.n_features_: int | None = None
        self.n_arm_features_: int | None = None

    # -- parameters -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self._param_names}
        out["seed"] = self.seed
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- input checks -----------------------------------------------------------------------
    @staticmethod
    def _as_float_array(value: Any, field: str) -> FloatArray:
        if type(value) is np.ndarray and value.dtype is _F64:
            return value
        try:
            return np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError.for_field(field, value, "must be an array of numbers") from None

    def _check_inputs(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Validate one decision's inputs and fix the dimensions on first use.

        Returns ``x`` and ``arm_features`` as float64 arrays (no copy when they already are).
        ``x`` is checked for finiteness through its squared norm (one dot product, no numpy
        warning: ``inf`` and ``nan`` propagate silently there, whereas the scoring products would
        warn before our error). ``arm_features`` are not (a pass over k x p values every round);
        policies detect non-finite values there from their scores and call
        :meth:`_raise_nonfinite`.
        """
        x = self._as_float_array(x, "x")
        arm_features = self._as_float_array(arm_features, "arm_features")
        if x.ndim != 1:
            raise ValidationError.for_field("x", x.shape, "must be a 1-d context vector")
        self._check_finite_x(x)
        if len(arms) == 0:
            raise ValidationError.for_field("arms", list(arms), "must contain at least one arm")
        if arm_features.ndim != 2 or arm_features.shape[0] != len(arms):
            raise ValidationError(
                f"arm_features must have shape (len(arms)={len(arms)}, p), "
                f"got {arm_features.shape}",
                field="arm_features",
                value=arm_features.shape,
            )
        self._check_dims(x.shape[0], arm_features.shape[1])
        return x, arm_features

    def _check_finite_x(self, x: FloatArray) -> None:
        """Refuse a non-finite context through its squared norm: one dot product, in which ``inf``
        and ``nan`` propagate without the numpy warning later products would raise first."""
        if not math.isfinite(float(x @ x)):
            self._raise_nonfinite(x)
            raise ValidationError.for_field(
                "x", float(np.abs(x).max()), "is too large (its squared norm overflows)"
            )

    def _check_update(
        self, x: FloatArray, arm: str, arm_features: FloatArray, reward: float, propensity: float
    ) -> tuple[FloatArray, FloatArray, float]:
        """Validate ``update``'s inputs; returns ``(x, arm_features_row, reward)``."""
        x = self._as_float_array(x, "x")
        arm_features = self._as_float_array(arm_features, "arm_features")
        if x.ndim != 1:
            raise ValidationError.for_field("x", x.shape, "must be a 1-d context vector")
        self._check_finite_x(x)
        if arm_features.ndim != 1:
            raise ValidationError.for_field(
                "arm_features", arm_features.shape, "must be the 1-d feature row of the arm"
            )
        if not isinstance(arm, str):
            raise ValidationError.for_field("arm", arm, "must be a string id")
        r = self._check_reward(reward, propensity)
        self._check_dims(x.shape[0], arm_features.shape[0])
        return x, arm_features, r

    def _check_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Validate ``score_batch``'s inputs; returns float64 ``X`` and ``arm_features``."""
        X = self._as_float_array(X, "X")
        if X.ndim != 2:
            raise ValidationError.for_field("X", X.shape, "must be a 2-d array (n, d)")
        if X.shape[0] == 0:
            raise ValidationError.for_field("X", X.shape, "must have at least one row")
        if not np.all(np.isfinite(X)):
            i, j = (int(v) for v in np.argwhere(~np.isfinite(X))[0])
            raise ValidationError.for_field(f"X[{i}, {j}]", float(X[i, j]), "must be finite")
        _, arm_features = self._check_inputs(X[0], arms, arm_features)
        return X, arm_features

    def _raise_nonfinite(self, x: FloatArray, arm_features: FloatArray | None = None) -> None:
        """Raise a :class:`ValidationError` naming the non-finite input (or return)."""
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise ValidationError.for_field(f"x[{bad}]", float(x[bad]), "must be finite")
        if arm_features is not None and not np.all(np.isfinite(arm_features)):
            bad_at = np.argwhere(~np.isfinite(arm_features))[0]
            i, j = int(bad_at[0]), int(bad_at[-1])
            raise ValidationError.for_field(
                f"arm_features[{i}, {j}]" if arm_features.ndim == 2 else f"arm_features[{j}]",
                float(arm_features[tuple(bad_at)]),
                "must be finite",
            )

    def _check_dims(self, d: int, p: int) -> None:
        if self.n_features_ is None:
            if d == 0:
                raise ValidationError.for_field("x", "length 0", "must have length >= 1")
            self._init_dims(d, p)  # first: it may reject the sizes
            self.n_features_ = d
            self.n_arm_features_ = p
            return
        if d != self.n_features_:
            raise ValidationError.for_field(
                "x", f"length {d}", f"must have length {self.n_features_} (as when first used)"
            )
        if p != self.n_arm_features_:
            raise ValidationError.for_field(
                "arm_features",
                f"{p} columns",
                f"must have {self.n_arm_features_} columns (as when first used)",
            )

    def _init_dims(self, d: int, p: int) -> None:
        """Allocate learned state once the input sizes are known."""

    @staticmethod
    def _check_reward(reward: float, propensity: float) -> float:
        # Fast path for the common plain floats (isinstance against numpy's ABCs is slow).
        if (
            type(reward) is float
            and type(propensity) is float
            and math.isfinite(reward)
            and 0.0 < propensity <= 1.0
        ):
            return reward
        if not is_real(reward) or not math.isfinite(reward):
            raise ValidationError.for_field("reward", reward, "must be a finite number")
        if not is_real(propensity) or not (0.0 < propensity <= 1.0):
            raise ValidationError.for_field("propensity", propensity, "must be in (0, 1]")
        return float(reward)

    # -- masks ------------------------------------------------------------------------------
    @staticmethod
    def _keep(mask: BoolArray | None, arms: Sequence[str]) -> IntArray | None:
        """The positions ``mask`` keeps (``None``: every arm; see :func:`._mask.check_mask`)."""
        return None if mask is None else check_mask(mask, len(arms))

    def _sub_list(
        self, keep: IntArray, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[tuple[str, ...], FloatArray]:
        """``(arms[keep], arm_features[keep])``, the inputs checked against the whole list."""
        Z = self._as_float_array(arm_features, "arm_features")
        if Z.ndim != 2 or Z.shape[0] != len(arms):
            self._check_inputs(x, arms, Z)  # raises the error naming the shape
        return tuple([arms[i] for i in keep.tolist()]), Z[keep]

    def _choose_sub_list(
        self, keep: IntArray, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> Choice:
        """The masked ``choose`` of a policy with no per-list cache to keep: ``choose`` on the
        sub-list, positions mapped back (so the same draws and distribution by construction)."""
        sub_arms, Z = self._sub_list(keep, x, arms, arm_features)
        return widen_choice(cast(Policy, self).choose(x, sub_arms, Z), keep, len(arms))

    def _probabilities_sub_list(
        self, keep: IntArray, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray | None:
        """The masked ``probabilities`` through the sub-list (see :meth:`_choose_sub_list`)."""
        sub_arms, Z = self._sub_list(keep, x, arms, arm_features)
        return widen_probabilities(self.probabilities(x, sub_arms, Z), keep, len(arms))

    # -- default implementations -------------------------------------------------------------
    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray | None:
        return None

    # -- state ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Learned state and random generator state as plain data (arrays are copies)."""
        state = self._base_state()
        state.update(self._learned_state())
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned; on invalid input nothing changes."""
        saved = (self.rng_, self.n_updates_, self.n_features_, self.n_arm_features_)
        try:
            self._set_base_state(state)
            self._set_learned_state(state)
        except BaseException:
            self.rng_, self.n_updates_, self.n_features_, self.n_arm_features_ = saved
            raise

    def _learned_state(self) -> dict[str, Any]:
        """Subclass hook: the learned state (plain data, arrays copied)."""
        return {}

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        """Subclass hook: validate all of ``state`` first, then assign (base state is set)."""

    def _base_state(self) -> dict[str, Any]:
        return {
            "rng": self.rng_.bit_generator.state,
            "n_updates": self.n_updates_,
            "n_features": self.n_features_,
            "n_arm_features": self.n_arm_features_,
        }

    def _set_base_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise ValidationError.for_field("state", type(state).__name__, "must be a mapping")
        for key in ("rng", "n_updates", "n_features", "n_arm_features"):
            if key not in state:
                raise ValidationError.for_field(f"state.{key}", "missing", "is required")
        if not isinstance(state["rng"], Mapping):
            raise ValidationError.for_field("state.rng", state["rng"], "must be a mapping")
        bitgen_state = dict(state["rng"])
        kind = str(bitgen_state.get("bit_generator"))
        if kind not in _BIT_GENERATORS:
            raise ValidationError.for_field(
                "state.rng.bit_generator", kind, f"must be one of {sorted(_BIT_GENERATORS)}"
            )
        bitgen = _BIT_GENERATORS[kind]()
        try:
            bitgen.state = bitgen_state
        except (TypeError, ValueError, KeyError) as exc:
            raise ValidationError.for_field(
                "state.rng", bitgen_state, f"is invalid ({exc})"
            ) from None
        d, p, n = state["n_features"], state["n_arm_features"], state["n_updates"]
        for key, val, low in (("n_features", d, 1), ("n_arm_features", p, 0)):
            if val is not None and (not isinstance(val, int | np.integer) or val < low):
                raise ValidationError.for_field(
                    f"state.{key}", val, f"must be an int >= {low} or None"
                )
        if not isinstance(n, int | np.integer) or n < 0:
            raise ValidationError.for_field("state.n_updates", n, "must be an int >= 0")
        self.rng_ = np.random.Generator(bitgen)
        self.n_updates_ = int(n)
        self.n_features_ = None if d is None else int(d)
        self.n_arm_features_ = None if p is None else int(p)
