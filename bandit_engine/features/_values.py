"""Scalar value rules shared by the serving path and the batch path.

Each ``to_*`` function is the single definition of what one raw value means for one field kind.
The batch encoders use vectorized fast paths for typed columns (numeric, bool, datetime64) and
fall back to these functions element by element for ``object`` columns, so that a value is
accepted, rejected and interpreted identically whichever path it takes.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import ValidationError

__all__ = [
    "MAX_EPOCH_SECONDS",
    "FloatArray",
    "RowLabel",
    "at_row",
    "datetime64_to_us",
    "invalid",
    "is_missing",
    "map_elements",
    "show",
    "tag_bucket",
    "to_category",
    "to_epoch_seconds",
    "to_flag",
    "to_number",
    "to_tags",
]

FloatArray = NDArray[np.float64]
RowLabel = Callable[[int], str]

_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
# Epoch seconds beyond this are rejected: the bound covers every datetime of years 1..9999 and
# keeps elapsed times finite.
MAX_EPOCH_SECONDS = 1e12


def show(value: Any) -> str:
    """``repr`` shortened to 120 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def invalid(field: str, value: Any, requirement: str, where: str | None = None) -> ValidationError:
    """A :class:`ValidationError` in the house shape, optionally locating the row."""
    message = f"{field} {requirement}, got {show(value)}"
    if where is not None:
        message += f" (at {where})"
    return ValidationError(message, field=field, value=value)


def is_missing(value: Any) -> bool:
    """True for ``None``, NaN, ``pd.NA`` and NaT (the values every field treats as missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return False


def at_row(err: ValidationError, where: str) -> ValidationError:
    """The same error, its message locating the row."""
    return ValidationError(f"{err.message} (at {where})", field=err.field, value=err.value)


def map_elements(fn: Callable[[Any], Any], values: Iterable[Any], where: RowLabel) -> list[Any]:
    """``[fn(v) for v in values]``, re-raising a :class:`ValidationError` with its row."""
    out: list[Any] = []
    try:
        for v in values:
            out.append(fn(v))
    except ValidationError as err:
        # len(out) is the position of the element that failed
        raise at_row(err, where(len(out))) from None
    return out


def to_number(field: str, value: Any) -> float | None:
    """A finite float, or ``None`` when missing. Rejects bool, str (even ``"12.5"``) and inf."""
    if type(value) is float:
        if math.isfinite(value):
            return value
        if value != value:
            return None
        raise invalid(field, value, "must be finite")
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        raise invalid(field, value, "must be a real number, not a bool")
    if isinstance(value, int | np.integer):
        try:
            return float(value)
        except OverflowError:
            raise invalid(field, value, "must fit in a float") from None
    if isinstance(value, float | np.floating):
        x = float(value)
        if math.isfinite(x):
            return x
        if x != x:
            return None
        raise invalid(field, value, "must be finite")
    if is_missing(value):
        return None
    raise invalid(field, value, "must be a real number (int or float)")


def to_category(field: str, value: Any) -> str | None:
    """A category label, or ``None`` when missing.

    ``str`` is taken as is; integers (and integral floats, because pandas stores an integer column
    with missing values as float) are written in decimal, so ``3`` and ``3.0`` both mean ``"3"``.
    Bools and non-integral floats are rejected.
    """
    if type(value) is str:
        return value
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | np.bool_):
        raise invalid(field, value, "must be a str or an integer, not a bool")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        x = float(value)
        if x != x:
            return None
        if math.isfinite(x) and x.is_integer():
            return str(int(x))
        raise invalid(field, value, "must be a str or an integer")
    if is_missing(value):
        return None
    raise invalid(field, value, "must be a str or an integer")


def to_tags(field: str, value: Any, sep: str | None) -> Sequence[str]:
    """The tags of one value: empty when missing.

    Accepts a list, tuple, set, frozenset or 1-d array of non-empty ``str``; a ``str`` only when
    ``sep`` is set (split on ``sep``, pieces stripped, empty pieces dropped).
    """
    if type(value) is list and all(type(t) is str and t != "" for t in value):
        return value  # the common case, returned as is
    if isinstance(value, str):
        if sep is None:
            raise invalid(field, value, "must be a list of str (or declare Tags(..., sep=...))")
        return tuple(p for p in (piece.strip() for piece in value.split(sep)) if p)
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        if isinstance(value, np.ndarray):
            if value.ndim != 1:
                raise invalid(field, value, "must be a 1-d array of str")
            items: Any = value.tolist()
        else:
            items = value
        for tag in items:
            if not isinstance(tag, str) or not tag:
                raise invalid(field, tag, "tags must be non-empty str")
        tags = [t if type(t) is str else str(t) for t in items]
        # sets have no stable order across processes (salted str hashing)
        return tuple(sorted(tags) if isinstance(value, set | frozenset) else tags)
    if is_missing(value):
        return ()
    raise invalid(field, value, "must be a list of str")


def tag_bucket(tag: str, n_buckets: int) -> int:
    """Stable hash bucket of a tag: ``zlib.crc32(tag.encode("utf-8")) % n_buckets``.

    CRC-32 is fixed by the standard, so buckets agree across processes, machines and Python
    versions (unlike the salted built-in ``hash``).
    """
    return zlib.crc32(tag.encode("utf-8")) % n_buckets


def datetime64_to_us(values: NDArray[np.int64], unit: str) -> NDArray[np.int64]:
    """Integer datetime64 payloads in ``unit`` ('s', 'ms', 'us', 'ns') to microseconds (floor)."""
    if unit == "ns":
        return values // 1_000
    return values * _US_PER_UNIT[unit]


def _timestamp_us(ts: pd.Timestamp) -> int:
    # asm8 carries the UTC instant in the Timestamp's own unit, so no tz handling is needed here
    raw = int(ts.asm8.view(np.int64))
    return raw // 1_000 if ts.unit == "ns" else raw * _US_PER_UNIT[ts.unit]


def _datetime_us(value: dt.datetime) -> int:
    # naive datetimes are taken as UTC; integer timedelta division is exact
    epoch = _EPOCH_NAIVE if value.utcoffset() is None else _EPOCH_UTC
    return (value - epoch) // _ONE_US


def to_epoch_seconds(field: str, value: Any) -> float | None:
    """Seconds since 1970-01-01 UTC (microsecond resolution), or ``None`` when missing.

    Accepts ``pd.Timestamp``, ``datetime.datetime``, ``np.datetime64``, ISO 8601 strings
    (``datetime.fromisoformat``) and epoch seconds as int or float. Naive times are UTC.
    Results beyond ``±MAX_EPOCH_SECONDS`` are rejected.
    """
    t = _epoch_seconds(field, value)
    if t is not None and abs(t) > MAX_EPOCH_SECONDS:
        raise invalid(field, value, f"must lie within ±{MAX_EPOCH_SECONDS:g} epoch seconds")
    return t


def _epoch_seconds(field: str, value: Any) -> float | None:
    if type(value) is float or type(value) is int:
        return to_number(field, value)
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise invalid(field, value, "must be an ISO 8601 timestamp") from None
        return float(_datetime_us(parsed)) / 1e6
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        try:
            value = pd.Timestamp(value)
        except (ValueError, OverflowError):
            raise invalid(field, value, "must be a representable timestamp") from None
    if isinstance(value, pd.Timestamp):
        return float(_timestamp_us(value)) / 1e6
    if isinstance(value, dt.datetime):
        return float(_datetime_us(value)) / 1e6
    if isinstance(value, bool | np.bool_):
        raise invalid(field, value, "must be a timestamp, not a bool")
    if isinstance(value, int | np.integer | float | np.floating):
        return to_number(field, value)
    if is_missing(value):
        return None
    raise invalid(field, value, "must be a timestamp (datetime, ISO string or epoch seconds)")


def to_flag(field: str, value: Any) -> float | None:
    """1.0 / 0.0 for a bool (or the numbers 0 and 1), ``None`` when missing."""
    if value is True or value is False:
        return 1.0 if value else 0.0
    if value is None:
        return None
    if isinstance(value, np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, int | np.integer | float | np.floating):
        if value != value:
            return None
        if value == 0 or value == 1:
            # written out so that -0.0 becomes 0.0 on both paths
            return 1.0 if value == 1 else 0.0
        raise invalid(field, value, "must be a bool (or 0 / 1)")
    if is_missing(value):
        return None
    raise invalid(field, value, "must be a bool (or 0 / 1)")
