"""The :class:`Policy` protocol and the helpers shared by every policy.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ValidationError
from ..records import Choice

__all__ = [
    "TIE_RTOL",
    "ArmTable",
    "BasePolicy",
    "FloatArray",
    "Policy",
    "SeedLike",
    "aligned_empty",
    "argmax_choice",
    "argmax_distribution",
    "check_choice",
    "check_finite",
    "check_in_range",
    "check_int",
    "check_positive",
    "grow_rows",
    "make_rng",
    "state_array",
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
_F64 = np.dtype(np.float64)
IntArray = NDArray[np.intp]

#: Relative tolerance under which two scores count as tied (see :func:`argmax_distribution`).
TIE_RTOL = 1e-12


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
        """Learn that showing ``arm`` (features ``arm_features``, shape ``(p,)``) in ``x`` paid
        ``reward``."""
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


# -- hyperparameter validation -----------------------------------------------------------------
def make_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or ``None`` (fresh
    entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ConfigError.for_field("seed", seed, "must be an int, a numpy Generator or None")
    if seed is not None and seed < 0:
        raise ConfigError.for_field("seed", seed, "must be >= 0")
    return np.random.default_rng(seed)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(
        value, bool | np.bool_
    )


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Validate a hyperparameter that must be > 0 (or >= 0)."""
    if not _is_real(value) or not np.isfinite(value) or (value < 0 if allow_zero else value <= 0):
        raise ConfigError.for_field(name, value, "must be >= 0" if allow_zero else "must be > 0")
    return float(value)


def check_in_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Validate ``low <= value <= high`` (ends optionally open)."""
    if _is_real(value) and np.isfinite(value):
        v = float(value)
        lo_ok = v > low if low_open else v >= low
        hi_ok = v < high if high_open else v <= high
        if lo_ok and hi_ok:
            return v
    lb = "(" if low_open else "["
    hb = ")" if high_open else "]"
    raise ConfigError.for_field(name, value, f"must be in {lb}{low}, {high}{hb}")


def check_finite(name: str, value: float) -> float:
    """Validate a hyperparameter that may be any finite real number."""
    if not _is_real(value) or not np.isfinite(value):
        raise ConfigError.for_field(name, value, "must be a finite number")
    return float(value)


def check_int(name: str, value: int, *, minimum: int) -> int:
    """Validate an integer hyperparameter ``>= minimum``."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ConfigError.for_field(name, value, f"must be an integer >= {minimum}")
    return int(value)


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """Validate a string hyperparameter against its allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError.for_field(name, value, f"must be one of {list(allowed)}")
    return value


# -- argmax with a documented distribution ------------------------------------------------------
def _tie_probs(scores: FloatArray, i: int, epsilon: float) -> tuple[FloatArray, IntArray | None]:
    """``(pi, ties)`` for the maximum at ``i``; ``ties`` is ``None`` when ``i`` is alone."""
    best = float(scores[i])
    if not math.isfinite(best):
        raise ValidationError.for_field(
            "scores", "non-finite", "must be finite (check x and arm_features for NaN or inf)"
        )
    k = scores.shape[0]
    is_tie = scores >= best - TIE_RTOL * max(1.0, abs(best))
    n_ties = int(np.count_nonzero(is_tie))
    if n_ties == 1:
        probs = np.full(k, epsilon / k) if epsilon > 0.0 else np.zeros(k)
        probs[i] += 1.0 - epsilon
        return probs, None
    probs = is_tie.astype(np.float64)
    probs *= (1.0 - epsilon) / n_ties
    if epsilon > 0.0:
        probs += epsilon / k
    return probs, np.flatnonzero(is_tie)


def argmax_distribution(scores: FloatArray, epsilon: float = 0.0) -> FloatArray:
    """The distribution of :func:`argmax_choice` over the candidates (no randomness used).

    ``pi(a) = (1 - epsilon) * [a in T] / |T| + epsilon / k`` where ``T`` is the set of scores
    within ``TIE_RTOL * max(1, |max score|)`` of the maximum. The tolerance makes arms in
    identical states tie even when BLAS sums their scores in a different order (which moves the
    last bit); genuinely different scores closer than that are treated as equal.
    """
    return _tie_probs(scores, int(scores.argmax()), epsilon)[0]


def argmax_choice(
    scores: FloatArray, rng: np.random.Generator, epsilon: float = 0.0
) -> tuple[int, float, FloatArray]:
    """Greedy choice with uniform random tie-breaking and optional epsilon mixing.

    With probability ``epsilon`` a uniformly random candidate is taken, otherwise a uniformly
    random member of the tie set ``T`` (see :func:`argmax_distribution`), so the propensity of
    the chosen arm is exactly ``pi(index)``. Randomness: one ``rng.random()`` when
    ``epsilon > 0``, one ``rng.integers`` when exploring or when ``|T| > 1``.
    Returns ``(index, pi(index), pi)``; raises :class:`ValidationError` on non-finite scores.
    """
    i = int(scores.argmax())
    probs, ties = _tie_probs(scores, i, epsilon)
    if epsilon > 0.0 and rng.random() < epsilon:
        i = int(rng.integers(scores.shape[0]))
    elif ties is not None:
        i = int(ties[rng.integers(ties.shape[0])])
    return i, float(probs[i]), probs


# -- arm bookkeeping ---------------------------------------------------------------------------
_NO_ROWS: IntArray = np.empty(0, dtype=np.intp)
_NO_ROWS.setflags(write=False)


class ArmTable:
    """Maps arm ids to rows of a policy's stacked per-arm arrays.

    Recent candidate tuples are cached by identity (tuples are immutable), so an engine that
    passes the same tuple of bundle ids for each city pays no dictionary look-ups: up to
    :attr:`RECENT` tuples, the oldest dropped first. The last candidate list is also compared
    by value, so an equal list passed again costs one comparison.
    """

    #: How many candidate tuples :meth:`rows` remembers.
    RECENT = 64

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        # id(tuple) -> (the tuple itself, keeping its id from being reused; rows; contiguous)
        self._recent: dict[int, tuple[tuple[str, ...], IntArray, bool]] = {}
        self._last: tuple[tuple[str, ...], IntArray, bool] = ((), _NO_ROWS, False)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def _check_unique(arms: Sequence[str]) -> None:
        if len(set(arms)) != len(arms):
            seen: set[str] = set()
            for arm in arms:
                if arm in seen:
                    raise ValidationError.for_field("arms", arm, "must not contain duplicates")
                seen.add(arm)

    def _new(self, arm: str) -> int:
        if not isinstance(arm, str):
            raise ValidationError.for_field("arm", arm, "must be a string id")
        row = len(self.ids)
        self.index[arm] = row
        self.ids.append(arm)
        return row

    def rows(self, arms: Sequence[str]) -> tuple[IntArray, bool, int]:
        """Row numbers of ``arms`` (new arms appended). Returns ``(rows, contiguous, n_new)``;
        ``contiguous`` means ``rows == arange(len(arms))`` so callers may slice instead of
        gather. The returned array is read-only and may be shared with the cache.

        Recent tuples are remembered by identity: the same tuple object costs one dictionary
        look-up (rows of existing ids never change); a list or tuple equal to the last one, one
        comparison; anything else is looked up arm by arm.
        """
        hit = self._recent.get(id(arms))
        if hit is not None and hit[0] is arms:
            return hit[1], hit[2], 0
        try:
            key = arms if type(arms) is tuple else tuple(arms)
            last = self._last
            if key == last[0]:  # an equal list or tuple: one comparison
                return last[1], last[2], 0
            self._check_unique(key)
            get = self.index.get
            found = [get(arm) for arm in key]
        except TypeError:  # unhashable id
            raise ValidationError.for_field("arms", list(arms), "must be string ids") from None
        n_before = len(self.ids)
        if n_before == 0 or None in found:
            found = [
                self._new(arm) if row is None else row for arm, row in zip(key, found, strict=True)
            ]
        out = np.array(found, dtype=np.intp)
        out.setflags(write=False)
        k = out.shape[0]
        contiguous = bool(k > 0 and found[0] == 0 and found[-1] == k - 1)
        if contiguous:
            contiguous = bool(np.array_equal(out, np.arange(k)))
        self._last = (key, out, contiguous)
        if key is arms:  # only the caller's own tuple can recur by identity
            recent = self._recent
            if len(recent) >= self.RECENT:
                del recent[next(iter(recent))]  # the oldest entry goes first
            recent[id(key)] = self._last
        return out, contiguous, len(self.ids) - n_before

    def lookup(self, arms: Sequence[str], missing: int) -> IntArray:
        """Rows of ``arms`` without creating anything; unknown ids get row ``missing``
        (policies point it at an untouched prior row)."""
        for a in arms:
            if not isinstance(a, str):
                raise ValidationError.for_field("arm", a, "must be a string id")
        self._check_unique(arms)
        index = self.index
        return np.fromiter((index.get(a, missing) for a in arms), dtype=np.intp, count=len(arms))

    def row(self, arm: str) -> tuple[int, bool]:
        """Row of one arm, creating it if needed. Returns ``(row, created)``."""
        try:
            row = self.index.get(arm)
        except TypeError:
            raise ValidationError.for_field("arm", arm, "must be a string id") from None
        if row is not None:
            return row, False
        return self._new(arm), True

    def clear_cache(self) -> None:
        self._recent.clear()
        self._last = ((), _NO_ROWS, False)

    def set_ids(self, ids: Sequence[str]) -> None:
        """Replace the table (used by ``set_state``)."""
        if not all(isinstance(a, str) for a in ids):
            raise ValidationError.for_field("state.arms", list(ids), "must be a list of strings")
        if len(set(ids)) != len(ids):
            raise ValidationError.for_field("state.arms", list(ids), "must not contain duplicates")
        self.ids = list(ids)
        self.index = {a: i for i, a in enumerate(self.ids)}
        self.clear_cache()


def aligned_empty(shape: tuple[int, ...], dtype: type = np.float64) -> NDArray[Any]:
    """An uninitialised C-contiguous array whose data start on a 64-byte boundary.

    BLAS gemv on the stacked per-arm matrices runs about 25% faster when rows are 32-byte
    aligned (measured: 6.6 vs 9.0 µs for a 1600x32 matrix), and numpy only guarantees 16.
    """
    itemsize = np.dtype(dtype).itemsize
    n = math.prod(shape)
    buf = np.empty(n * itemsize + 64, dtype=np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start : start + n * itemsize].view(dtype).reshape(shape)


def grow_rows(arr: NDArray[Any], n_rows: int, fill: NDArray[Any] | float) -> NDArray[Any]:
    """Return ``arr`` with at least ``n_rows`` rows (capacity doubles); new rows get ``fill``.

    The result is 64-byte aligned (see :func:`aligned_empty`).
    """
    if arr.shape[0] >= n_rows:
        return arr
    cap = max(n_rows, 2 * arr.shape[0], 8)
    out = aligned_empty((cap, *arr.shape[1:]), arr.dtype.type)
    out[: arr.shape[0]] = arr
    out[arr.shape[0] :] = fill
    return out


def state_array(
    state: Mapping[str, Any],
    key: str,
    shape: tuple[int | None, ...],
    dtype: type = np.float64,
) -> NDArray[Any]:
    """Fetch ``state[key]`` as a fresh aligned array of ``dtype`` and check its shape.

    ``None`` in ``shape`` accepts any length on that axis. Errors name ``state.<key>``.
    """
    if key not in state:
        raise ValidationError.for_field(f"state.{key}", "missing", "is required")
    try:
        raw: NDArray[Any] = np.asarray(state[key], dtype=dtype)
    except (TypeError, ValueError):
        raise ValidationError.for_field(
            f"state.{key}", type(state[key]).__name__, f"must be a {np.dtype(dtype)} array"
        ) from None
    if raw.ndim != len(shape) or any(
        s is not None and s != n for s, n in zip(shape, raw.shape, strict=True)
    ):
        want = tuple("*" if s is None else s for s in shape)
        raise ValidationError.for_field(f"state.{key}", raw.shape, f"must have shape {want}")
    if dtype is np.float64 and not np.all(np.isfinite(raw)):
        raise ValidationError.for_field(f"state.{key}", "non-finite", "must be finite")
    out = aligned_empty(raw.shape, dtype)
    out[...] = raw
    return out


# -- the base class ----------------------------------------------------------------------------
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
        if not _is_real(reward) or not math.isfinite(reward):
            raise ValidationError.for_field("reward", reward, "must be a finite number")
        if not _is_real(propensity) or not (0.0 < propensity <= 1.0):
            raise ValidationError.for_field("propensity", propensity, "must be in (0, 1]")
        return float(reward)

    # -- default implementations -------------------------------------------------------------
    def probabilities(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
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
