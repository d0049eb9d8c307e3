"""Fitted encoders: one per field, grouped into a :class:`FittedBlock` per table.

A block turns one row (a dict) or a whole table (a DataFrame) into a fixed-width float block.
Both paths apply the same arithmetic to the same float64 values in the same order, and every
transcendental step goes through the same numpy ufunc (``np.log1p``), so they agree bit for bit.
(``math.log1p`` would not do: numpy's SIMD ``log1p`` differs from libm's in the last bit for a
few percent of inputs on AVX-512 machines.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import ConfigError, DataError, ValidationError
from ._columns import canonical_frame, check_fields, check_now, check_out, check_time
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

__all__ = ["FittedBlock", "FittedField", "fit_block", "fit_canonical", "fit_fields", "latest_time"]

UNKNOWN = "<unknown>"
OTHER = "<other>"
MISSING = "<missing>"
Writer = Callable[[Any, FloatArray, int, float], None]


def _json_floats(arr: FloatArray) -> list[Any]:
    return [None if v != v else v for v in arr.tolist()]


# ---------------------------------------------------------------------------- fitted fields


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


def _field_from_dict(data: Any, prefix: str, where: str) -> FittedField:
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


# ---------------------------------------------------------------------------- blocks


class FittedBlock:
    """The fitted encoders of one table: a fixed-width block of features.

    Build with :func:`fit_block` (or :meth:`from_dict`). Undeclared columns and row keys are
    ignored by default (``ignore_extra=True``: catalog tables carry ids, titles, validity);
    with ``ignore_extra=False`` any but ``key`` is a :class:`ValidationError`. In a row dict an
    absent field is a missing value; a table must have every declared column (unless it has no
    rows). ``key`` also names rows in error messages.

    Attributes
    ----------
    prefix, key
        Feature-name prefix (``"<prefix>.<field>"``) and ignored id column.
    fields
        The fitted encoders, in declaration order.
    names, width
        Output column names and their number.
    reference_time
        The ``now`` used for recency statistics at fit; the default ``now`` at encode time.
    """

    def __init__(
        self,
        prefix: str,
        fields: Sequence[FittedField],
        *,
        key: str | None = None,
        reference_time: float | None = None,
    ) -> None:
        self.prefix = prefix
        self.key = key
        self.reference_time = reference_time
        self.fields = tuple(fields)
        self.specs = tuple(f.spec for f in self.fields)
        self.names = [n for f in self.fields for n in f.names]
        self.width = len(self.names)
        self.has_recency = any(isinstance(f, FittedRecency) for f in self.fields)
        self._allowed = frozenset(s.name for s in self.specs) | (
            {key} if key is not None else set()
        )
        offsets = np.cumsum([0] + [f.width for f in self.fields]).tolist()
        self._plan: tuple[tuple[str, Writer, int], ...] = tuple(
            (f.spec.name, f.write, off) for f, off in zip(self.fields, offsets, strict=False)
        )
        self._offsets: list[int] = offsets[:-1]

    def __repr__(self) -> str:
        return f"FittedBlock(prefix={self.prefix!r}, fields={len(self.fields)}, width={self.width})"

    # -- serving path

    def resolve_now(self, now: Any) -> float:
        """``now`` as a float (``reference_time`` if ``None``); NaN when no field needs it."""
        if now is None:
            now = self.reference_time
            if now is None:
                if self.has_recency:
                    raise ValidationError.for_field(
                        "now", None, "must be given (no timestamps were seen at fit)"
                    )
                return float("nan")
        return check_now(now)

    def write_row(
        self, row: Any, out: FloatArray, offset: int, now: float, ignore_extra: bool
    ) -> None:
        """Encode ``row`` into the zeroed ``out[offset:offset + width]`` (``now`` resolved)."""
        if type(row) is not dict and not isinstance(row, Mapping):
            raise ValidationError.for_field(
                self.prefix, row, "must be a dict of field values or None"
            )
        if not ignore_extra and not self._allowed.issuperset(row):
            bad = next(k for k in row if k not in self._allowed)
            raise invalid(
                f"{self.prefix}.{bad}",
                row[bad],
                f"is not a declared field (declared: {', '.join(s.name for s in self.specs)})",
            )
        get = row.get
        for name, write, rel in self._plan:
            write(get(name), out, offset + rel, now)

    def encode_one(
        self,
        row: Mapping[str, Any],
        out: FloatArray | None = None,
        offset: int = 0,
        *,
        now: float | None = None,
        ignore_extra: bool = True,
    ) -> FloatArray:
        """Encode one row into ``out[offset:offset + width]`` (a new array when ``out`` is None).

        Returns ``out`` (or the new ``(width,)`` array).
        """
        t = self.resolve_now(now)
        if out is None:
            out = np.zeros(self.width)
        else:
            check_out(out, offset + self.width)
            out[offset : offset + self.width] = 0.0
        self.write_row(row, out, offset, t, ignore_extra)
        return out

    # -- batch path

    def canonical(self, df: Any, ignore_extra: bool) -> tuple[list[Any], RowLabel]:
        """Validated canonical columns of ``df`` (one per field) and its row labeller."""
        return canonical_frame(
            self.specs, df, prefix=self.prefix, key=self.key, ignore_extra=ignore_extra
        )

    def write_frame(
        self, canon: Sequence[Any], out: FloatArray, where: RowLabel, now: float
    ) -> None:
        """Encode canonical columns into the zeroed ``out`` of shape ``(n, width)``."""
        for f, c, off in zip(self.fields, canon, self._offsets, strict=True):
            f.write_column(c, out, off, now, where)

    def encode_frame(
        self, df: pd.DataFrame, *, now: float | None = None, ignore_extra: bool = True
    ) -> FloatArray:
        """Encode every row of ``df``: an ``(len(df), width)`` float64 array, row order kept."""
        t = self.resolve_now(now)
        canon, where = self.canonical(df, ignore_extra)
        out = np.zeros((len(df), self.width))
        self.write_frame(canon, out, where, t)
        return out

    def records(self, df: pd.DataFrame, *, ignore_extra: bool = True) -> list[dict[str, Any]]:
        """Validated rows of ``df`` as JSON-native dicts (timestamps as epoch seconds, missing
        values as ``None``, tags as lists), without the key column."""
        canon, _ = self.canonical(df, ignore_extra)
        columns = [f.jsonify(c) for f, c in zip(self.fields, canon, strict=True)]
        names = [s.name for s in self.specs]
        return (
            [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
            if columns
            else []
        )

    # -- persistence

    def fields_to_list(self) -> list[dict[str, Any]]:
        """Specs and learned state of every field, as JSON data."""
        return [{"spec": f.spec.to_dict(), "state": f.state()} for f in self.fields]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description (rebuild with :meth:`from_dict`)."""
        return {
            "prefix": self.prefix,
            "key": self.key,
            "reference_time": self.reference_time,
            "fields": self.fields_to_list(),
        }

    @classmethod
    def from_parts(
        cls,
        prefix: str,
        fields: Any,
        *,
        key: str | None,
        reference_time: float | None,
        where: str,
    ) -> FittedBlock:
        """Rebuild from :meth:`fields_to_list` output; :class:`ValidationError` if malformed."""
        if not isinstance(fields, list):
            raise ValidationError.for_field(f"{where}.fields", fields, "must be a list")
        fitted = [_field_from_dict(d, prefix, f"{where}.fields[{i}]") for i, d in enumerate(fields)]
        try:
            check_fields([f.spec for f in fitted], prefix, key)
        except ConfigError as err:
            raise ValidationError(
                f"{where}: {err.message}", field=err.field, value=err.value
            ) from None
        return cls(prefix, fitted, key=key, reference_time=reference_time)

    @classmethod
    def from_dict(cls, data: Any) -> FittedBlock:
        """Rebuild from :meth:`to_dict` output; :class:`ValidationError` if malformed."""
        if not isinstance(data, Mapping) or set(data) != {
            "prefix",
            "key",
            "reference_time",
            "fields",
        }:
            raise ValidationError.for_field(
                "block", data, "must be a dict with keys prefix, key, reference_time, fields"
            )
        prefix, key, ref = data["prefix"], data["key"], data["reference_time"]
        if not isinstance(prefix, str) or not prefix:
            raise ValidationError.for_field("block.prefix", prefix, "must be a non-empty str")
        if key is not None and not isinstance(key, str):
            raise ValidationError.for_field("block.key", key, "must be a str or None")
        return cls.from_parts(
            prefix,
            data["fields"],
            key=key,
            reference_time=check_time("block.reference_time", ref),
            where="block",
        )


def fit_block(
    fields: Sequence[FieldSpec],
    df: pd.DataFrame,
    *,
    prefix: str,
    key: str | None = None,
    now: float | None = None,
    ignore_extra: bool = True,
) -> FittedBlock:
    """Fit the encoders of ``fields`` on ``df`` (also exported as ``fit_fields``).

    Parameters
    ----------
    fields
        Field specs, distinct names.
    df
        The table (may be empty: then numerics standardize with (0, 1) and vocabularies are empty).
    prefix
        Feature-name prefix, e.g. ``"deal"`` gives ``"deal.price"``.
    key
        Id column to ignore in tables and rows.
    now
        Reference time for recency statistics; default the latest timestamp in ``df``.
    ignore_extra
        Ignore undeclared columns (the default: tables usually carry ids and other data);
        ``False`` raises :class:`ValidationError` naming them.
    """
    specs = check_fields(fields, prefix, key)
    canon, _ = canonical_frame(specs, df, prefix=prefix, key=key, ignore_extra=ignore_extra)
    ref = latest_time(specs, canon) if now is None else check_now(now)
    return FittedBlock(
        prefix, fit_canonical(specs, prefix, canon, ref), key=key, reference_time=ref
    )


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


fit_fields = fit_block
