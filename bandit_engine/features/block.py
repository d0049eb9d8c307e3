"""The fitted block: the fitted encoders of one table, as one fixed-width float block.

A block turns one row (a dict) or a whole table (a DataFrame) into its columns, with the fields
of :mod:`bandit_engine.features.encoders` in declaration order; both paths agree bit for bit
(see there). :func:`fit_block` fits one on a table; catalogs use it for deals and courses, and
:class:`~bandit_engine.features.FeatureMap` holds one per platform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, ValidationError
from ._columns import canonical_frame, check_fields, check_now, check_out, check_time
from ._values import FloatArray, RowLabel, invalid
from .encoders import FittedField, FittedRecency, field_from_dict, fit_canonical, latest_time
from .specs import FieldSpec

__all__ = ["FittedBlock", "fit_block"]

Writer = Callable[[Any, FloatArray, int, float], None]


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
        fitted = [field_from_dict(d, prefix, f"{where}.fields[{i}]") for i, d in enumerate(fields)]
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
    """Fit the encoders of ``fields`` on ``df``.

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
