"""The :class:`Policy` protocol and the helpers shared by every policy.

A policy sees, for one decision, a context vector ``x`` (shape ``(d,)``), the ids of the candidate
arms (bundles) and their feature rows ``arm_features`` (shape ``(k, p)``). It returns a
:class:`~bandit_engine.records.Choice`: the position of the chosen arm, the probability with which it
was chosen, and one score per candidate. It learns from ``update(x, arm, arm_features_row, reward,
propensity)``. Arms are identified by string ids; a policy creates the state of an arm the first
time it sees its id, so bundles added at run time need no registration and retired bundles keep
what they taught (they are merely no longer offered).

State is plain data (numpy arrays, numbers, strings, lists and dicts) so that an engine can be saved
without pickle and restored exactly, random generator included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ValidationError
from ..records import Choice

__all__ = [
    "ArmTable",
    "BasePolicy",
    "Policy",
    "SeedLike",
    "argmax_choice",
    "check_in_range",
    "check_positive",
    "make_rng",
]

SeedLike = int | np.random.Generator | None
_BIT_GENERATORS: dict[str, type[np.random.BitGenerator]] = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
    "MT19937": np.random.MT19937,
}
FloatArray = NDArray[np.float64]


@runtime_checkable
class Policy(Protocol):
    """What every policy implements (LinUCB, Thompson sampling, baselines, Vowpal Wabbit)."""

    name: ClassVar[str]
    n_updates_: int

    def choose(self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray) -> Choice:
        """Choose one of ``arms`` for context ``x``; ``arm_features[i]`` describes ``arms[i]``."""
        ...

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Learn that showing ``arm`` (features ``arm_features``, shape ``(p,)``) in ``x`` paid ``reward``."""
        ...

    def probabilities(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray | None:
        """The exact distribution of ``choose`` over ``arms`` (no randomness consumed), or ``None``
        when the policy can only be sampled."""
        ...

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Deterministic scores (estimated mean reward) for every (row of ``X``, arm): ``(n, k)``."""
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


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or ``None`` (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ConfigError.for_field("seed", seed, "must be an int, a numpy Generator or None")
    return np.random.default_rng(seed)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Validate a hyperparameter that must be > 0 (or >= 0)."""
    ok_type = isinstance(value, int | float | np.floating | np.integer) and not isinstance(
        value, bool
    )
    if not ok_type or not np.isfinite(value) or (value < 0 if allow_zero else value <= 0):
        raise ConfigError.for_field(name, value, "must be >= 0" if allow_zero else "must be > 0")
    return float(value)


def check_in_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Validate ``low <= value <= high`` (ends optionally open)."""
    ok_type = isinstance(value, int | float | np.floating | np.integer) and not isinstance(
        value, bool
    )
    if ok_type and np.isfinite(value):
        v = float(value)
        lo_ok = v > low if low_open else v >= low
        hi_ok = v < high if high_open else v <= high
        if lo_ok and hi_ok:
            return v
    lb = "(" if low_open else "["
    hb = ")" if high_open else "]"
    raise ConfigError.for_field(name, value, f"must be in {lb}{low}, {high}{hb}")


def argmax_choice(
    scores: FloatArray, rng: np.random.Generator, epsilon: float = 0.0
) -> tuple[int, float, FloatArray]:
    """Greedy choice with uniform random tie-breaking and optional epsilon mixing.

    The distribution is ``pi(a) = (1 - epsilon) * [a in T] / |T| + epsilon / k`` where ``T`` is the
    set of maximal scores (exact float equality). Returns ``(index, pi(index), pi)``.
    """
    k = scores.shape[0]
    best = scores.max()
    ties = np.flatnonzero(scores == best)
    probs = np.full(k, epsilon / k)
    probs[ties] += (1.0 - epsilon) / ties.shape[0]
    if epsilon > 0.0 and rng.random() < epsilon:
        index = int(rng.integers(k))
    elif ties.shape[0] == 1:
        index = int(ties[0])
    else:
        index = int(ties[rng.integers(ties.shape[0])])
    return index, float(probs[index]), probs


class ArmTable:
    """Maps arm ids to rows of a policy's stacked per-arm arrays.

    The last candidate list is cached by identity, so an engine that passes the same tuple of
    bundle ids each round pays no dictionary look-ups.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._last_key: Sequence[str] | None = None
        self._last_rows: NDArray[np.intp] = np.empty(0, dtype=np.intp)
        self._last_contiguous = False

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, arms: Sequence[str]) -> tuple[NDArray[np.intp], bool, int]:
        """Row numbers of ``arms`` (new arms appended). Returns ``(rows, contiguous, n_new)``;
        ``contiguous`` means ``rows == arange(len(arms))`` so callers may slice instead of gather."""
        if arms is self._last_key:
            return self._last_rows, self._last_contiguous, 0
        n_before = len(self.ids)
        index = self.index
        out = np.empty(len(arms), dtype=np.intp)
        for i, arm in enumerate(arms):
            row = index.get(arm)
            if row is None:
                row = len(self.ids)
                index[arm] = row
                self.ids.append(arm)
            out[i] = row
        contiguous = bool(out.shape[0] > 0 and out[0] == 0 and out[-1] == out.shape[0] - 1)
        if contiguous:
            contiguous = bool(np.all(out == np.arange(out.shape[0])))
        if isinstance(arms, tuple):
            self._last_key, self._last_rows, self._last_contiguous = arms, out, contiguous
        return out, contiguous, len(self.ids) - n_before

    def row(self, arm: str) -> tuple[int, bool]:
        """Row of one arm, creating it if needed. Returns ``(row, created)``."""
        row = self.index.get(arm)
        if row is not None:
            return row, False
        row = len(self.ids)
        self.index[arm] = row
        self.ids.append(arm)
        return row, True

    def clear_cache(self) -> None:
        self._last_key = None


def grow_rows(arr: FloatArray, n_rows: int, fill: FloatArray | float) -> FloatArray:
    """Return ``arr`` with at least ``n_rows`` rows (capacity doubles); new rows get ``fill``."""
    if arr.shape[0] >= n_rows:
        return arr
    cap = max(n_rows, 2 * arr.shape[0], 8)
    out = np.empty((cap, *arr.shape[1:]), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    out[arr.shape[0] :] = fill
    return out


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

    def clone(self, seed: SeedLike = None) -> BasePolicy:
        """A fresh, untrained policy with the same hyperparameters (and ``seed`` if given)."""
        params = self.get_params()
        if seed is not None:
            params["seed"] = seed
        return type(self)(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- input checks -----------------------------------------------------------------------
    def _check_inputs(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> None:
        if x.ndim != 1:
            raise ValidationError.for_field("x", x.shape, "must be a 1-d context vector")
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

    def _check_dims(self, d: int, p: int) -> None:
        if self.n_features_ is None:
            self.n_features_ = d
            self.n_arm_features_ = p
            self._init_dims(d, p)
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
        r = float(reward)
        if not np.isfinite(r):
            raise ValidationError.for_field("reward", reward, "must be a finite number")
        p = float(propensity)
        if not (0.0 < p <= 1.0):
            raise ValidationError.for_field("propensity", propensity, "must be in (0, 1]")
        return r

    # -- default implementations -------------------------------------------------------------
    def probabilities(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray | None:
        return None

    # -- state ------------------------------------------------------------------------------
    def _base_state(self) -> dict[str, Any]:
        return {
            "rng": self.rng_.bit_generator.state,
            "n_updates": self.n_updates_,
            "n_features": self.n_features_,
            "n_arm_features": self.n_arm_features_,
        }

    def _set_base_state(self, state: Mapping[str, Any]) -> None:
        bitgen_state = dict(state["rng"])
        kind = str(bitgen_state.get("bit_generator"))
        if kind not in _BIT_GENERATORS:
            raise ValidationError.for_field(
                "rng.bit_generator", kind, f"must be one of {sorted(_BIT_GENERATORS)}"
            )
        bitgen = _BIT_GENERATORS[kind]()
        bitgen.state = bitgen_state
        self.rng_ = np.random.Generator(bitgen)
        self.n_updates_ = int(state["n_updates"])
        d, p = state["n_features"], state["n_arm_features"]
        self.n_features_ = None if d is None else int(d)
        self.n_arm_features_ = None if p is None else int(p)
