"""Fitted encoders, one per field type: what each field learned at fit and how it encodes.

A fitted field turns one raw value (serving: :meth:`FittedField.write`) or one canonical column
(batch: :meth:`FittedField.write_column`) into its columns of a block. Both paths apply the same
arithmetic to the same float64 values in the same order, and every transcendental step goes
through the same numpy ufunc (``np.log1p``), so they agree bit for bit. (``math.log1p`` would not
do: numpy's SIMD ``log1p`` differs from libm's in the last bit for a few percent of inputs on
AVX-512 machines.) :class:`~bandit_engine.features.block.FittedBlock` groups the fields of one
table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import DataError, ValidationError
from ._values import (
    MAX_EPOCH_SECONDS,
    FloatArray,
    RowLabel,
    invalid,
    tag_bucket,
    to_category,
    to_epoch_seconds,
    to_flag,
    to_number,
    to_tags,
)
from .specs import (
    RECENCY_UNITS,
    Boolean,
    Categorical,
    FieldSpec,
    Numeric,
    Recency,
    Tags,
    spec_from_dict,
)

__all__ = [
    "FittedBoolean",
    "FittedCategorical",
    "FittedField",
    "FittedNumeric",
    "FittedRecency",
    "FittedTags",
    "field_from_dict",
    "fit_canonical",
    "latest_time",
]

UNKNOWN = "<unknown>"
OTHER = "<other>"
MISSING = "<missing>"


def _json_floats(arr: FloatArray) -> list[Any]:
    return [None if v != v else v for v in arr.tolist()]


def _stats(label: str, values: FloatArray) -> tuple[float, float]:
    """Mean and population std of the observed values; (0, 1) if none, std 0 becomes 1."""
    if values.size == 0:
        return 0.0, 1.0
    mean = float(np.mean(values))
    std = float(np.std(values))
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise DataError(f"{label} has values too large to standardize", field=label)
    return mean, (std if std > 0.0 else 1.0)


def _state_float(
    state: Mapping[str, Any], key: str, where: str, *, positive: bool = False
) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValidationError.for_field(f"{where}.{key}", value, "must be a finite number")
    if positive and value <= 0:
        raise ValidationError.for_field(f"{where}.{key}", value, "must be > 0")
    return float(value)


def _state_labels(
    state: Mapping[str, Any], key: str, where: str, limit: int, reserved: str
) -> list[str]:
    value = state.get(key)
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v != reserved for v in value)
        or len(set(value)) != len(value)
        or len(value) > limit
    ):
        raise ValidationError.for_field(
            f"{where}.{key}",
            value,
            f"must be a list of at most {limit} distinct str other than {reserved!r}",
        )
    return list(value)


class FittedField:
    """One fitted field: its spec, the column names it produces and the statistics it learned.

    ``write`` encodes one raw value into ``out[pos:pos + width]`` (assumed zeroed);
    ``write_column`` encodes a column made by :func:`canonical_column` into
    ``out[:, pos:pos + width]``; ``jsonify`` turns a canonical column into JSON-native values.
    """

    spec: FieldSpec
    label: str
    names: list[str]

    @property
    def width(self) -> int:
        """Number of output columns."""
        return len(self.names)

    def write(self, value: Any, out: FloatArray, pos: int, now: float) -> None:
        raise NotImplementedError

    def write_column(
        self, canon: Any, out: FloatArray, pos: int, now: float, where: RowLabel
    ) -> None:
        raise NotImplementedError

    def jsonify(self, canon: Any) -> list[Any]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Learned statistics as JSON data."""
        return {}


class _Standardized(FittedField):
    """Shared by Numeric and Recency: a float, optional log1p, standardized, missing indicator."""

    def __init__(self, spec: Numeric | Recency, label: str, mean: float, std: float) -> None:
        self.spec = spec
        self.label = label
        self.mean = mean
        self.std = std
        self.log = spec.log
        self.indicator = spec.missing_indicator
        self.names = [label] + ([f"{label}={MISSING}"] if self.indicator else [])

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def _finish(self, x: FloatArray, missing: NDArray[np.bool_], out: FloatArray, pos: int) -> None:
        if self.log:
            x = np.log1p(x)
        z = (x - self.mean) / self.std
        z[missing] = 0.0
        out[:, pos] = z
        if self.indicator:
            out[:, pos + 1] = missing

    def jsonify(self, canon: Any) -> list[Any]:
        return _json_floats(canon)


class FittedNumeric(_Standardized):
    spec: Numeric

    def write(self, value: Any, out: FloatArray, pos: int, now: float) -> None:
        x = value if type(value) is float and value - value == 0.0 else to_number(self.label, value)
        if x is None:
            if self.indicator:
                out[pos + 1] = 1.0
            return
        if self.log:
            if x < 0.0:
                raise invalid(self.label, value, "must be >= 0 (declared log=True)")
            x = float(np.log1p(x))
        out[pos] = (x - self.mean) / self.std

    def write_column(
        self, canon: Any, out: FloatArray, pos: int, now: float, where: RowLabel
    ) -> None:
        self._finish(canon, np.isnan(canon), out, pos)


class FittedRecency(_Standardized):
    spec: Recency

    def __init__(self, spec: Recency, label: str, mean: float, std: float) -> None:
        super().__init__(spec, label, mean, std)
        self.unit_seconds = RECENCY_UNITS[spec.unit]

    def elapsed(self, secs: FloatArray, now: float) -> FloatArray:
        """Elapsed time in units, future clipped to 0 (before log and standardization)."""
        e = (now - secs) / self.unit_seconds
        return np.where(e > 0.0, e, 0.0)

    def write(self, value: Any, out: FloatArray, pos: int, now: float) -> None:
        if type(value) is float and -MAX_EPOCH_SECONDS <= value <= MAX_EPOCH_SECONDS:
            t: float | None = value  # the serving fast path (NaN fails the range test)
        else:
            t = to_epoch_seconds(self.label, value)
        if t is None:
            if self.indicator:
                out[pos + 1] = 1.0
            return
        e = (now - t) / self.unit_seconds
        if not e > 0.0:
            e = 0.0
        if self.log:
            e = float(np.log1p(e))
        out[pos] = (e - self.mean) / self.std

    def write_column(
        self, canon: Any, out: FloatArray, pos: int, now: float, where: RowLabel
    ) -> None:
        self._finish(self.elapsed(canon, now), np.isnan(canon), out, pos)


class FittedCategorical(FittedField):
    spec: Categorical

    def __init__(self, spec: Categorical, label: str, categories: list[str]) -> None:
        self.spec = spec
        self.label = label
        self.categories = categories
        self.unknown = len(categories)
        self._index = {c: i for i, c in enumerate(categories)}
        self._lookup = pd.Index(categories, dtype=object)
        self.names = [f"{label}={c}" for c in categories] + [f"{label}={UNKNOWN}"]

    def state(self) -> dict[str, Any]:
        return {"categories": list(self.categories)}

    def write(self, value: Any, out: FloatArray, pos: int, now: float) -> None:
        c = value if type(value) is str else to_category(self.label, value)
        out[pos + (self.unknown if c is None else self._index.get(c, self.unknown))] = 1.0

    def write_column(
        self, canon: Any, out: FloatArray, pos: int, now: float, where: RowLabel
    ) -> None:
        codes = self._lookup.get_indexer(canon)
        codes[codes < 0] = self.unknown
        out[np.arange(len(codes)), pos + codes] = 1.0

    def jsonify(self, canon: Any) -> list[Any]:
        return list(canon)


class FittedTags(FittedField):
    spec: Tags

    def __init__(self, spec: Tags, label: str, vocabulary: list[str] | None) -> None:
        """``vocabulary=None`` means hashed."""
        self.spec = spec
        self.label = label
        self.sep = spec.sep
        self.hashed = vocabulary is None
        self.vocabulary = vocabulary or []
        self.other = len(self.vocabulary)
        self.buckets = spec.hash_buckets
        self._index = {t: i for i, t in enumerate(self.vocabulary)}
        self._lookup = pd.Index(self.vocabulary, dtype=object)
        if self.hashed:
            self.names = [f"{label}#{b}" for b in range(self.buckets)]
        else:
            self.names = [f"{label}={t}" for t in self.vocabulary] + [f"{label}={OTHER}"]

    def state(self) -> dict[str, Any]:
        return {"hashed": self.hashed, "vocabulary": list(self.vocabulary)}

    def write(self, value: Any, out: FloatArray, pos: int, now: float) -> None:
        tags = to_tags(self.label, value, self.sep)
        if self.hashed:
            for t in tags:
                out[pos + tag_bucket(t, self.buckets)] = 1.0
        else:
            for t in tags:
                out[pos + self._index.get(t, self.other)] = 1.0

    def write_column(
        self, canon: Any, out: FloatArray, pos: int, now: float, where: RowLabel
    ) -> None:
        lengths = np.fromiter(map(len, canon), dtype=np.intp, count=len(canon))
        flat = list(chain.from_iterable(canon))
        if not flat:
            return
        rows = np.repeat(np.arange(len(canon)), lengths)
        if self.hashed:
            cols = np.fromiter(
                (tag_bucket(t, self.buckets) for t in flat), dtype=np.intp, count=len(flat)
            )
        else:
            cols = self._lookup.get_indexer(pd.Index(flat, dtype=object))
            cols[cols < 0] = self.other
        out[rows, pos + cols] = 1.0

    def jsonify(self, canon: Any) -> list[Any]:
        return [list(t) for t in canon]


class FittedBoolean(FittedField):
    spec: Boolean

    def __init__(self, spec: Boolean, label: str) -> None:
        self.spec = spec
        self.label = label
        self.indicator = spec.missing_indicator
        self.names = [label] + ([f"{label}={MISSING}"] if self.indicator else [])

    def write(self, value: Any, out: FloatArray, pos: int, now: float) -> None:
        f = to_flag(self.label, value)
        if f is None:
            if self.indicator:
                out[pos + 1] = 1.0
        elif f:
            out[pos] = 1.0

    def write_column(
        self, canon: Any, out: FloatArray, pos: int, now: float, where: RowLabel
    ) -> None:
        out[:, pos] = canon == 1.0
        if self.indicator:
            out[:, pos + 1] = np.isnan(canon)

    def jsonify(self, canon: Any) -> list[Any]:
        return [None if v != v else bool(v) for v in canon.tolist()]


def _ranked(counts: Counter[str], reserved: str, min_count: int) -> list[str]:
    """Labels seen at least ``min_count`` times, most frequent first, ties by label."""
    kept = [(c, n) for c, n in counts.items() if n >= min_count and c != reserved]
    return [c for c, _ in sorted(kept, key=lambda item: (-item[1], item[0]))]


def _fit_field(spec: FieldSpec, label: str, canon: Any, now: float | None) -> FittedField:
    if isinstance(spec, Numeric):
        x = canon[~np.isnan(canon)]
        return FittedNumeric(spec, label, *_stats(label, np.log1p(x) if spec.log else x))
    if isinstance(spec, Recency):
        secs = canon[~np.isnan(canon)]
        if secs.size == 0 or now is None:
            return FittedRecency(spec, label, 0.0, 1.0)
        e = (now - secs) / RECENCY_UNITS[spec.unit]
        e = np.where(e > 0.0, e, 0.0)
        return FittedRecency(spec, label, *_stats(label, np.log1p(e) if spec.log else e))
    if isinstance(spec, Categorical):
        counts = Counter(c for c in canon if c is not None)
        return FittedCategorical(
            spec, label, _ranked(counts, UNKNOWN, spec.min_count)[: spec.max_categories]
        )
    if isinstance(spec, Tags):
        vocab = _ranked(Counter(chain.from_iterable(set(t) for t in canon)), OTHER, 1)
        return FittedTags(spec, label, vocab if len(vocab) <= spec.max_vocabulary else None)
    return FittedBoolean(spec, label)


def field_from_dict(data: Any, prefix: str, where: str) -> FittedField:
    if not isinstance(data, Mapping) or set(data) != {"spec", "state"}:
        raise ValidationError.for_field(where, data, "must be a dict with keys 'spec' and 'state'")
    spec = spec_from_dict(data["spec"], f"{where}.spec")
    state = data["state"]
    if not isinstance(state, Mapping):
        raise ValidationError.for_field(f"{where}.state", state, "must be a dict")
    label = f"{prefix}.{spec.name}"
    where = f"{where}.state"
    if isinstance(spec, Numeric | Recency):
        mean = _state_float(state, "mean", where)
        std = _state_float(state, "std", where, positive=True)
        return (
            FittedNumeric(spec, label, mean, std)
            if isinstance(spec, Numeric)
            else FittedRecency(spec, label, mean, std)
        )
    if isinstance(spec, Categorical):
        return FittedCategorical(
            spec, label, _state_labels(state, "categories", where, spec.max_categories, UNKNOWN)
        )
    if isinstance(spec, Tags):
        hashed = state.get("hashed")
        if not isinstance(hashed, bool):
            raise ValidationError.for_field(f"{where}.hashed", hashed, "must be a bool")
        vocab = _state_labels(
            state, "vocabulary", where, 0 if hashed else spec.max_vocabulary, OTHER
        )
        return FittedTags(spec, label, None if hashed else vocab)
    return FittedBoolean(spec, label)


def latest_time(specs: Sequence[FieldSpec], canon: Sequence[Any]) -> float | None:
    """The latest timestamp among the recency columns, ``None`` if there is none."""
    latest: float | None = None
    for spec, c in zip(specs, canon, strict=True):
        if isinstance(spec, Recency) and np.any(~np.isnan(c)):
            m = float(np.nanmax(c))
            latest = m if latest is None else max(latest, m)
    return latest


def fit_canonical(
    specs: Sequence[FieldSpec], prefix: str, canon: Sequence[Any], now: float | None
) -> list[FittedField]:
    """Fit each field on its canonical column."""
    return [_fit_field(s, f"{prefix}.{s.name}", c, now) for s, c in zip(specs, canon, strict=True)]
