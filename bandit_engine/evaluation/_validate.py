"""Input checks shared by every off-policy estimator.

All estimators take the same keyword arrays (Open Bandit Pipeline names): ``reward`` (n,),
``action`` (n,), ``pscore`` (n,), ``action_dist`` (n, K) or (n, K, L) with ``position`` (n,),
``action_prob`` (n,) and ``estimated_rewards`` (n, K) or (n, K, L). :func:`validate_rows` turns them
into a :class:`LoggedRows` or raises an error from :mod:`bandit_engine.errors` naming the field, the
shapes and the first offending row indices (0-based positions in the arrays).

The checks on an (n, K) matrix cost a row sum and a minimum (two passes); non-finite estimated
rewards are found through the direct-method product, which is computed anyway, so a 10-million-row
chunked evaluation is not dominated by validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, DataError, ValidationError

__all__ = [
    "SUM_TOLERANCE",
    "FloatArray",
    "IntArray",
    "LoggedRows",
    "as_action",
    "as_float_1d",
    "as_float_2d",
    "as_float_array",
    "check_clip",
    "check_finite_terms",
    "check_level",
    "pick",
    "preview_rows",
    "validate_rows",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Largest accepted ``|sum_a action_dist[i, a] - 1|``; loose enough for float32 softmax outputs.
SUM_TOLERANCE = 1e-6
_PREVIEW = 5


def preview_rows(
    indices: NDArray[Any],
    values: NDArray[Any] | None = None,
    *,
    total: int | None = None,
    one_based: bool = False,
    limit: int = _PREVIEW,
) -> str:
    """Describe offending rows: ``"3 of 1000 rows (indices 5, 17, 230; values 0, -1, 2)"``.

    ``indices`` are 0-based array positions; with ``one_based`` they are shown as 1-based data row
    numbers (``rows 6, 18 ...``) as the file loaders do.
    """
    count = int(indices.shape[0])
    shown = [int(i) + (1 if one_based else 0) for i in indices[:limit]]
    more = ", ..." if count > limit else ""
    label = {(True, True): "row", (True, False): "rows", (False, True): "index"}.get(
        (one_based, count == 1), "indices"
    )
    head = f"{count} of {total} rows" if total is not None else f"{count} row{'s' * (count != 1)}"
    text = f"{head} ({label} {', '.join(map(str, shown))}{more}"
    if values is not None:
        vals = ", ".join(_fmt(v) for v in values[:limit])
        text += f"; values {vals}{more}"
    return text + ")"


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    return str(v)


def as_float_array(name: str, value: ArrayLike) -> FloatArray:
    """A float64 array of any shape; :class:`ValidationError` naming ``name`` when ``value`` is
    not an array of numbers (text, ragged nested lists ...)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError.for_field(name, _kind(value), "must be an array of numbers") from exc
    return arr


def as_float_1d(name: str, value: ArrayLike, *, allow_nan: bool = False) -> FloatArray:
    """A 1-d float64 array of finite numbers (NaN allowed with ``allow_nan``)."""
    arr = as_float_array(name, value)
    if arr.ndim != 1:
        raise ValidationError(
            f"{name} must be 1-d with shape (n,), got shape {arr.shape}",
            field=name,
            value=arr.shape,
        )
    bad_mask = ~np.isfinite(arr)
    if allow_nan:
        bad_mask &= ~np.isnan(arr)
    if bad_mask.any():
        bad = np.flatnonzero(bad_mask)
        raise ValidationError(
            f"{name} must be finite: {preview_rows(bad, arr[bad], total=arr.shape[0])}",
            field=name,
            value=arr[bad[:_PREVIEW]].tolist(),
        )
    return arr


def as_float_2d(name: str, value: ArrayLike) -> FloatArray:
    """A 2-d float64 array of finite numbers (features ``X``, contexts)."""
    arr = as_float_array(name, value)
    if arr.ndim != 2:
        raise ValidationError(
            f"{name} must be 2-d, got shape {arr.shape}", field=name, value=arr.shape
        )
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValidationError(
            f"{name} must be finite: non-finite values in {preview_rows(bad, total=arr.shape[0])}",
            field=name,
            value=bad[:_PREVIEW].tolist(),
        )
    return arr


def as_action(name: str, value: ArrayLike, *, n_actions: int | None = None) -> IntArray:
    """A 1-d int64 array of action indices in ``[0, n_actions)`` (integral floats accepted)."""
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValidationError(
            f"{name} must be 1-d with shape (n,), got shape {arr.shape}",
            field=name,
            value=arr.shape,
        )
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64, copy=False)
    elif arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        integral = finite & (arr == np.round(np.where(finite, arr, 0.0)))
        if not integral.all():
            bad = np.flatnonzero(~integral)
            raise ValidationError(
                f"{name} must hold integer action indices: "
                f"{preview_rows(bad, arr[bad], total=arr.shape[0])}",
                field=name,
                value=arr[bad[:_PREVIEW]].tolist(),
            )
        out = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        raise ValidationError.for_field(name, "bool array", "must hold integer action indices")
    else:
        raise ValidationError.for_field(
            name, f"dtype {arr.dtype}", "must hold integer action indices (map ids with load_log)"
        )
    high = n_actions if n_actions is not None else None
    bad_mask = out < 0 if high is None else (out < 0) | (out >= high)
    if bad_mask.any():
        bad = np.flatnonzero(bad_mask)
        rng = "[0, inf)" if high is None else f"[0, {high})"
        raise ValidationError(
            f"{name} must be in {rng}: {preview_rows(bad, out[bad], total=out.shape[0])}",
            field=name,
            value=out[bad[:_PREVIEW]].tolist(),
        )
    return out


def _kind(value: Any) -> str:
    return type(value).__name__


def check_level(level: float) -> float:
    """Coverage level of an interval, in (0, 1)."""
    ok = isinstance(level, int | float | np.floating) and not isinstance(level, bool)
    if not ok or not (0.0 < float(level) < 1.0):
        raise ConfigError.for_field("level", level, "must be in (0, 1)")
    return float(level)


def check_clip(name: str, value: float | None, *, allow_zero: bool = False) -> float:
    """A weight threshold: ``None`` means none (``inf``); else > 0 (or >= 0); ``inf`` allowed."""
    if value is None:
        return float("inf")
    ok = isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
    if not ok or np.isnan(value) or (value < 0 if allow_zero else value <= 0):
        raise ConfigError.for_field(name, value, "must be >= 0" if allow_zero else "must be > 0")
    return float(value)


@dataclass(frozen=True, eq=False)
class LoggedRows:
    """Validated logged rows, with the evaluated policy resolved at each row's position.

    Attributes
    ----------
    reward, action
        (n,) logged rewards and action indices.
    pscore
        (n,) logging propensities of the logged actions, or ``None`` when not needed.
    pi
        (n,) evaluated policy's probability of the logged action (at the row's position), or
        ``None`` when not needed.
    dist
        (n, K) evaluated policy at the row's position, or ``None``.
    qhat
        (n, K) estimated rewards at the row's position, or ``None``.
    """

    reward: FloatArray
    action: IntArray
    pscore: FloatArray | None
    pi: FloatArray | None
    dist: FloatArray | None
    qhat: FloatArray | None

    @property
    def n(self) -> int:
        return int(self.action.shape[0])

    @property
    def weight(self) -> FloatArray:
        """Importance weights ``pi / pscore`` (requires both)."""
        assert self.pi is not None and self.pscore is not None
        return self.pi / self.pscore


def _shape_error(name: str, expected: str, got: tuple[int, ...], n: int) -> ValidationError:
    return ValidationError(
        f"{name} must have shape {expected} with n = {n} (the length of reward/action), "
        f"got shape {got}",
        field=name,
        value=got,
    )


def _check_lengths(arrays: dict[str, NDArray[Any]]) -> int:
    lengths = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        parts = ", ".join(f"{k} (n={v})" for k, v in lengths.items())
        first = next(iter(lengths))
        raise ValidationError(f"{parts} must have the same length", field=first, value=lengths)
    n = next(iter(lengths.values()))
    if n == 0:
        raise DataError("no logged rows: reward and action are empty", field="reward", value=0)
    return n


def _check_pscore(pscore: FloatArray, estimator: str) -> None:
    missing = np.isnan(pscore)
    if missing.any():
        bad = np.flatnonzero(missing)
        raise DataError(
            f"pscore is missing (NaN) for {preview_rows(bad, total=pscore.shape[0])}; "
            f"{estimator} cannot use rows without the logging propensity (importance weights "
            "are 1 / pscore): drop those rows, or use dm(), which needs no propensities",
            field="pscore",
            value=bad[:_PREVIEW].tolist(),
        )
    bad_mask = ~((pscore > 0.0) & (pscore <= 1.0))
    if bad_mask.any():
        bad = np.flatnonzero(bad_mask)
        raise ValidationError(
            f"pscore must be in (0, 1]: {preview_rows(bad, pscore[bad], total=pscore.shape[0])}",
            field="pscore",
            value=pscore[bad[:_PREVIEW]].tolist(),
        )


def _check_position(position: ArrayLike | None, n: int, n_positions: int | None) -> IntArray | None:
    if position is None:
        if n_positions is not None and n_positions > 1:
            raise ValidationError(
                f"position is required when action_dist has shape (n, K, L) with L = "
                f"{n_positions} > 1 (which slice of action_dist belongs to each row?)",
                field="position",
                value=None,
            )
        return None
    pos = as_action("position", position, n_actions=n_positions)
    if pos.shape[0] != n:
        raise _shape_error("position", "(n,)", pos.shape, n)
    return pos


def _slice_at_position(arr: FloatArray, pos: IntArray | None) -> FloatArray:
    if arr.ndim == 2:
        return arr
    if pos is None:  # L == 1
        return arr[:, :, 0]
    return arr[np.arange(arr.shape[0]), :, pos]


def pick(matrix: FloatArray, action: IntArray) -> FloatArray:
    """``matrix[i, action[i]]`` for every row (flat indexing when contiguous: about 2x faster)."""
    n, k = matrix.shape
    if matrix.flags.c_contiguous:
        out: FloatArray = matrix.reshape(-1)[np.arange(n) * k + action]
    else:
        out = matrix[np.arange(n), action]
    return out


def _check_dist(dist: FloatArray, raw_shape: tuple[int, ...]) -> None:
    """``dist`` is (n, K) at each row's position: non-negative, finite, rows summing to 1."""
    n = dist.shape[0]
    # A matrix-vector product is the fastest row sum; NaN and inf propagate into it.
    sums = dist @ np.ones(dist.shape[1])
    if not np.isfinite(sums).all():
        bad = np.flatnonzero(~np.isfinite(dist).all(axis=1))
        raise ValidationError(
            f"action_dist (shape {raw_shape}) must be finite: non-finite entries in "
            f"{preview_rows(bad, total=n)}",
            field="action_dist",
            value=bad[:_PREVIEW].tolist(),
        )
    if dist.size and dist.min() < 0.0:
        bad = np.flatnonzero((dist < 0.0).any(axis=1))
        raise ValidationError(
            f"action_dist (shape {raw_shape}) must be >= 0: negative entries in "
            f"{preview_rows(bad, dist.min(axis=1)[bad], total=n)}",
            field="action_dist",
            value=bad[:_PREVIEW].tolist(),
        )
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        bad = np.flatnonzero(off)
        raise ValidationError(
            f"action_dist (shape {raw_shape}) rows must sum to 1 over the K actions (within "
            f"{SUM_TOLERANCE:g}): {preview_rows(bad, sums[bad], total=n)}",
            field="action_dist",
            value=sums[bad[:_PREVIEW]].tolist(),
        )


def validate_rows(
    *,
    estimator: str,
    reward: ArrayLike | None,
    action: ArrayLike | None,
    pscore: ArrayLike | None = None,
    action_dist: ArrayLike | None = None,
    action_prob: ArrayLike | None = None,
    position: ArrayLike | None = None,
    estimated_rewards: ArrayLike | None = None,
    need_pscore: bool,
    need_qhat: bool = False,
    allow_action_prob: bool = False,
) -> LoggedRows:
    """Validate the estimator inputs and resolve the evaluated policy at each row's position.

    Parameters
    ----------
    estimator
        Name used in messages (``"ips"`` ...).
    need_pscore
        The estimator weights by ``1 / pscore``.
    need_qhat
        The estimator needs ``estimated_rewards`` (DM and the DR family).
    allow_action_prob
        ``action_prob`` (n,) may replace ``action_dist`` (IPS, SNIPS).

    Raises
    ------
    ValidationError
        Wrong shapes (shown), non-finite values, out-of-range actions or propensities,
        ``action_dist`` rows not summing to 1.
    DataError
        No rows, or missing (NaN) propensities for a weighting estimator.
    """
    if action is None:
        raise ValidationError(f"{estimator} needs action (n,)", field="action", value=None)
    act = as_action("action", action)
    arrays: dict[str, NDArray[Any]] = {}
    rew: FloatArray
    if reward is None:
        if need_pscore:
            raise ValidationError(f"{estimator} needs reward (n,)", field="reward", value=None)
        rew = np.zeros(act.shape[0])
    else:
        rew = as_float_1d("reward", reward)
        arrays["reward"] = rew
    arrays["action"] = act
    ps: FloatArray | None = None
    if need_pscore:
        if pscore is None:
            raise DataError(
                f"{estimator} needs pscore, the logging propensity of each logged action; "
                "without propensities use dm(), which needs none",
                field="pscore",
                value=None,
            )
        ps = as_float_1d("pscore", pscore, allow_nan=True)
        arrays["pscore"] = ps
    elif pscore is not None:
        ps = as_float_1d("pscore", pscore, allow_nan=True)
        arrays["pscore"] = ps
    ap: FloatArray | None = None
    if action_prob is not None:
        if not allow_action_prob:
            raise ValidationError(
                f"{estimator} needs the full action_dist (n, K), not action_prob",
                field="action_prob",
                value=None,
            )
        if action_dist is not None:
            raise ValidationError(
                "give exactly one of action_dist (n, K) and action_prob (n,), got both",
                field="action_prob",
                value=None,
            )
        ap = as_float_1d("action_prob", action_prob)
        arrays["action_prob"] = ap
    n = _check_lengths(arrays)
    if ps is not None:
        _check_pscore(ps, estimator)

    if ap is not None:
        bad_mask = (ap < 0.0) | (ap > 1.0)
        if bad_mask.any():
            bad = np.flatnonzero(bad_mask)
            raise ValidationError(
                f"action_prob must be in [0, 1]: {preview_rows(bad, ap[bad], total=n)}",
                field="action_prob",
                value=ap[bad[:_PREVIEW]].tolist(),
            )
        return LoggedRows(reward=rew, action=act, pscore=ps, pi=ap, dist=None, qhat=None)

    if action_dist is None:
        needed = "action_dist (n, K)" + (" or action_prob (n,)" if allow_action_prob else "")
        raise ValidationError(f"{estimator} needs {needed}", field="action_dist", value=None)
    ad = as_float_array("action_dist", action_dist)
    if ad.ndim not in (2, 3) or ad.shape[0] != n:
        raise _shape_error("action_dist", "(n, K) or (n, K, L)", ad.shape, n)
    n_actions = ad.shape[1]
    if n_actions == 0:
        raise _shape_error("action_dist", "(n, K) with K >= 1", ad.shape, n)
    n_positions = ad.shape[2] if ad.ndim == 3 else None
    pos = _check_position(position, n, n_positions)
    high = int(act.max())
    if high >= n_actions:
        bad = np.flatnonzero(act >= n_actions)
        raise ValidationError(
            f"action must be in [0, {n_actions}) (K = action_dist.shape[1], action_dist shape "
            f"{ad.shape}): {preview_rows(bad, act[bad], total=n)}",
            field="action",
            value=act[bad[:_PREVIEW]].tolist(),
        )
    dist = _slice_at_position(ad, pos)
    _check_dist(dist, ad.shape)
    pi = pick(dist, act)
    qhat: FloatArray | None = None
    if estimated_rewards is not None:
        er = as_float_array("estimated_rewards", estimated_rewards)
        ok = er.ndim in (2, 3) and er.shape[:2] == ad.shape[:2]
        if ok and er.ndim == 3 and ad.ndim == 3:
            ok = er.shape == ad.shape
        if not ok:
            raise ValidationError(
                f"estimated_rewards must have shape (n, K) = {ad.shape[:2]}"
                + (f" or {ad.shape} (the shape of action_dist)" if ad.ndim == 3 else "")
                + f", got shape {er.shape}",
                field="estimated_rewards",
                value=er.shape,
            )
        # (n, K) action_dist with (n, K, L) estimated rewards: the policy ignores the position
        # but the reward model does not, so the position still selects the model's slice.
        pos_q = pos if ad.ndim == 3 or er.ndim == 2 else _check_position(position, n, er.shape[2])
        qhat = _slice_at_position(er, pos_q)
    elif need_qhat:
        raise ValidationError(
            f"{estimator} needs estimated_rewards (n, K), e.g. from cross_fit_rewards",
            field="estimated_rewards",
            value=None,
        )
    return LoggedRows(reward=rew, action=act, pscore=ps, pi=pi, dist=dist, qhat=qhat)


def check_finite_terms(name: str, values: FloatArray, qhat: FloatArray | None) -> None:
    """Raise if the direct-method terms are non-finite (which means ``qhat`` was)."""
    if np.isfinite(values).all():
        return
    if qhat is not None:
        bad = np.flatnonzero(~np.isfinite(qhat).all(axis=1))
        if bad.shape[0]:
            raise ValidationError(
                f"estimated_rewards must be finite: non-finite entries in "
                f"{preview_rows(bad, total=qhat.shape[0])}",
                field="estimated_rewards",
                value=bad[:_PREVIEW].tolist(),
            )
    bad = np.flatnonzero(~np.isfinite(values))
    raise ValidationError(
        f"{name} gave non-finite terms (overflow?): {preview_rows(bad, total=values.shape[0])}",
        field=name,
        value=bad[:_PREVIEW].tolist(),
    )
