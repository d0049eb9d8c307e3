"""Column validation: a DataFrame column -> the canonical form the fitted encoders consume.

Typed columns (int, float, bool, datetime64) take vectorized paths; ``object`` columns go element
by element through the scalar rules of :mod:`._values`, which the serving path uses too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import ConfigError, ValidationError
from ._values import (
    MAX_EPOCH_SECONDS,
    FloatArray,
    RowLabel,
    at_row,
    datetime64_to_us,
    invalid,
    map_elements,
    show,
    to_category,
    to_epoch_seconds,
    to_flag,
    to_number,
    to_tags,
)
from .specs import Boolean, Categorical, FieldSpec, Numeric, Recency, Tags

__all__ = [
    "canonical_column",
    "canonical_frame",
    "check_fields",
    "check_now",
    "check_out",
    "check_time",
    "row_labels",
]


def _float_column(
    label: str, col: pd.Series, where: RowLabel, fn: Callable[[str, Any], Any]
) -> FloatArray:
    """Canonical float64 column (NaN = missing), vectorized for int/float dtypes."""
    if col.dtype.kind in "iuf":
        arr: FloatArray = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise invalid(label, col.iloc[i], "must be finite", where(i))
        return arr
    values = map_elements(lambda v: fn(label, v), col.to_numpy(dtype=object), where)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _category_column(label: str, col: pd.Series, where: RowLabel) -> NDArray[np.object_]:
    """Canonical labels (``str`` or ``None``); typed columns are coerced once per distinct value."""
    if col.dtype == np.dtype(object):
        labels = map_elements(lambda v: to_category(label, v), col.to_numpy(), where)
        out = np.empty(len(labels), dtype=np.object_)
        out[:] = labels
        return out
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    table: list[str | None] = []
    for j, u in enumerate(uniques):
        try:
            table.append(to_category(label, u))
        except ValidationError as err:
            raise at_row(err, where(int(np.argmax(codes == j)))) from None
    table.append(None)  # code -1 (missing) indexes this
    lookup = np.empty(len(table), dtype=np.object_)
    lookup[:] = table
    return lookup[codes]


def _seconds_column(label: str, col: pd.Series, where: RowLabel) -> FloatArray:
    """Canonical epoch seconds (NaN = missing); datetime64 and numeric columns are vectorized."""
    secs: FloatArray
    if col.dtype.kind == "M":
        index = pd.DatetimeIndex(col)
        us = datetime64_to_us(index.asi8, str(index.unit))
        secs = us.astype(np.float64) / 1e6
        secs[np.asarray(index.isna())] = np.nan
    else:
        secs = _float_column(label, col, where, to_epoch_seconds)
    bad = np.abs(secs) > MAX_EPOCH_SECONDS
    if bad.any():
        i = int(np.argmax(bad))
        raise invalid(
            label, col.iloc[i], f"must lie within ±{MAX_EPOCH_SECONDS:g} epoch seconds", where(i)
        )
    return secs


def _flag_column(label: str, col: pd.Series, where: RowLabel) -> FloatArray:
    if col.dtype.kind in "biuf":
        arr: FloatArray = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~(np.isnan(arr) | (arr == 0.0) | (arr == 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise invalid(label, col.iloc[i], "must be a bool (or 0 / 1)", where(i))
        return arr + 0.0  # turns -0.0 into 0.0, as the scalar rule does
    return _float_column(label, col, where, to_flag)


def canonical_column(spec: FieldSpec, label: str, col: pd.Series, where: RowLabel) -> Any:
    """Validate a column and put it in the canonical form the encoders consume.

    Numeric, Recency (epoch seconds) and Boolean: float64 array with NaN for missing.
    Categorical: object array of ``str`` / ``None``. Tags: list of tuples of ``str``.
    """
    if isinstance(spec, Numeric):
        x = _float_column(label, col, where, to_number)
        if spec.log:
            bad = x < 0.0
            if bad.any():
                i = int(np.argmax(bad))
                raise invalid(label, col.iloc[i], "must be >= 0 (declared log=True)", where(i))
        return x
    if isinstance(spec, Recency):
        return _seconds_column(label, col, where)
    if isinstance(spec, Categorical):
        return _category_column(label, col, where)
    if isinstance(spec, Tags):
        sep = spec.sep
        values = col.to_numpy(dtype=object)
        fast = _plain_tags(values)
        if fast is not None:
            return fast
        return map_elements(lambda v: to_tags(label, v, sep), values, where)
    return _flag_column(label, col, where)


def _plain_tags(values: NDArray[Any]) -> list[Any] | None:
    """What :func:`to_tags` gives each value when every value is a list of non-empty ``str`` or
    ``None`` (a Parquet tags column), checked for the column at once: the lists as they are,
    ``()`` for ``None``. ``None`` when any value needs the rules one by one (which then name
    the bad row). Type tests over the column in C instead of a generator per row: an import
    of millions of rows spent ~40% of its checking in them."""
    kinds = set(map(type, values))
    if not kinds <= _LIST_OR_NONE:
        return None
    lists: list[Any] = values.tolist()
    if type(None) in kinds:
        lists = [() if v is None else v for v in lists]
    flat = list(chain.from_iterable(lists))
    if (flat and set(map(type, flat)) != _STR) or "" in flat:
        return None
    return lists


_LIST_OR_NONE = frozenset({list, type(None)})
_STR = {str}


def check_fields(fields: Any, prefix: str, key: str | None) -> tuple[FieldSpec, ...]:
    """Validate a list of field specs: :class:`ConfigError` naming the offending field."""
    if isinstance(fields, str | bytes) or not isinstance(fields, Sequence):
        raise ConfigError.for_field(prefix, fields, "must be a list of field specs")
    if not fields:
        raise ConfigError.for_field(prefix, fields, "must declare at least one field")
    seen: set[str] = set()
    for i, spec in enumerate(fields):
        if not isinstance(spec, Numeric | Categorical | Tags | Recency | Boolean):
            raise ConfigError.for_field(
                f"{prefix}[{i}]",
                spec,
                "must be a Numeric, Categorical, Tags, Recency or Boolean spec",
            )
        label = f"{prefix}.{spec.name}"
        if spec.name in seen:
            raise ConfigError.for_field(label, spec, "is declared twice")
        if spec.name == key:
            raise ConfigError.for_field(
                label, spec, f"is the key column {key!r} and cannot be a feature"
            )
        seen.add(spec.name)
    return tuple(fields)


def row_labels(df: pd.DataFrame, key: str | None) -> RowLabel:
    """Describe row ``i`` of ``df`` in error messages (by key when the table has one)."""
    if key is not None and key in df.columns:
        keys = df[key].to_numpy(dtype=object)
        return lambda i: f"{key}={show(keys[i])}"
    return lambda i: f"row {i}"


def check_time(field: str, value: Any) -> float | None:
    """A stored reference time: ``None`` or a finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValidationError.for_field(field, value, "must be finite epoch seconds or null")
    return float(value)


def check_out(out: Any, size: int, *, exact: bool = False) -> None:
    """``out`` must be a writeable float64 vector of ``size`` (or, unless exact, more) elements."""
    if (
        not isinstance(out, np.ndarray)
        or out.dtype != np.float64
        or out.ndim != 1
        or out.shape[0] < size
        or (exact and out.shape[0] != size)
        or not out.flags.writeable
    ):
        raise ValidationError.for_field(
            "out",
            getattr(out, "shape", type(out).__name__),
            f"must be a writeable float64 array of shape ({size},) or longer",
        )


def canonical_frame(
    specs: Sequence[FieldSpec], df: Any, *, prefix: str, key: str | None, ignore_extra: bool
) -> tuple[list[Any], RowLabel]:
    """Check a table against ``specs`` and canonicalize its declared columns.

    Raises :class:`ValidationError` for a non-DataFrame, duplicated column names, undeclared
    columns (unless ``ignore_extra``; ``key`` is always allowed), a declared column absent from
    a non-empty table, or a bad value (naming the row).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValidationError.for_field(prefix, type(df).__name__, "must be a pandas DataFrame")
    if not df.columns.is_unique:
        dup = df.columns[df.columns.duplicated()].tolist()
        raise ValidationError.for_field(f"{prefix}.{dup[0]}", dup, "is a duplicated column")
    if not ignore_extra:
        allowed = {s.name for s in specs} | {key}
        extra = [c for c in df.columns if c not in allowed]
        if extra:
            raise invalid(
                f"{prefix}.{extra[0]}",
                extra,
                "is not a declared column (declare it or pass ignore_extra=True)",
            )
    where = row_labels(df, key)
    canon = []
    for spec in specs:
        label = f"{prefix}.{spec.name}"
        if spec.name in df.columns:
            col = df[spec.name]
        elif len(df) == 0:
            col = pd.Series([], dtype=object)
        else:
            raise ValidationError(
                f"{label} is declared but the table has no such column "
                f"(columns: {show(list(df.columns))})",
                field=label,
                value=list(df.columns),
            )
        canon.append(canonical_column(spec, label, col, where))
    return canon, where


def check_now(now: Any) -> float:
    """A caller's ``now``: finite epoch seconds as float."""
    if type(now) is float and math.isfinite(now):  # the serving fast path
        return now
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ValidationError.for_field("now", now, "must be finite epoch seconds (float)")
    return float(now)
