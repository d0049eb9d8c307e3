"""The deals and courses tables: validated records, encoded feature rows and active flags.

One :class:`ItemTable` per kind of item, columnar: item ids (and their row index), one JSON-native
record per item (what :meth:`~bandit_engine.catalog.Catalog.to_dict` saves), the encoded block
``z`` of every item (one row each, from the table's :class:`~bandit_engine.features.FittedBlock`)
and a boolean ``active`` array. :class:`DealTable` adds what eligibility needs of a deal: its city
and its validity window. Rows are never removed: retiring clears ``active``, so a retired item
keeps its row, its id and its features, and re-adding its id updates the row in place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import NotFoundError, ValidationError
from ..features import Categorical, FieldSpec, FittedBlock, Numeric

__all__ = [
    "DEFAULT_COURSE_FEATURES",
    "DEFAULT_DEAL_FEATURES",
    "DealTable",
    "ItemTable",
    "check_table",
    "parse_ids",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

DEFAULT_DEAL_FEATURES: tuple[FieldSpec, ...] = (
    Categorical("cuisine"),
    Numeric("price", log=True),
    Numeric("discount"),
)
DEFAULT_COURSE_FEATURES: tuple[FieldSpec, ...] = (
    Categorical("topic"),
    Categorical("format"),
    Numeric("price", log=True),
    Numeric("rating"),
)


def check_table(df: pd.DataFrame, name: str, key: str, columns: Sequence[str]) -> None:
    """Raise :class:`ValidationError` unless ``df`` is a DataFrame with ``key`` and ``columns``
    and unique keys."""
    if not isinstance(df, pd.DataFrame):
        raise ValidationError.for_field(name, type(df).__name__, "must be a pandas DataFrame")
    missing = [c for c in [key, *columns] if c not in df.columns]
    if missing:
        raise ValidationError.for_field(
            f"{name}.{missing[0]}", sorted(df.columns.astype(str)), "is a required column"
        )
    ids = df[key].astype(str)
    dup = ids[ids.duplicated()]
    if not dup.empty:
        raise ValidationError.for_field(f"{name}.{key}", dup.iloc[0], "must be unique")


def parse_ids(values: Iterable[Any], field: str) -> list[str]:
    """Ids as ``str``; a missing one is a :class:`ValidationError`."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise ValidationError.for_field(field, v, "must not be missing")
        out.append(str(v))
    return out


def _to_epoch(values: pd.Series, field: str) -> FloatArray:
    """Epoch seconds from numbers, datetimes or ISO strings; missing -> NaN (open bound)."""
    if values.empty:
        return np.empty(0)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        stamps = pd.to_datetime(values, utc=True, errors="raise")
    except (ValueError, TypeError) as exc:
        raise ValidationError.for_field(
            field, values.tolist()[:3], f"must hold timestamps ({exc})"
        ) from None
    out = np.full(len(values), np.nan)
    ok = stamps.notna().to_numpy()
    out[ok] = stamps[ok].astype("int64").to_numpy() / 1e9
    return out


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float | np.floating):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, list | tuple | set):
        return [_json_value(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return float(v.timestamp())
    return v


class ItemTable:
    """Items of one kind (courses; deals through :class:`DealTable`), one row each.

    Parameters
    ----------
    name
        Table name in error messages (``"deals"``, ``"courses"``).
    key
        Id column (``"deal_id"``, ``"course_id"``).
    block
        The fitted encoders of the item features.
    columns
        Required columns besides ``key`` (the feature columns, and for deals the city column).

    Attributes
    ----------
    ids, index
        Item ids in row order, and id -> row.
    records
        One JSON-native dict per row: ``key``, ``columns`` and the optional columns present.
    z
        Encoded features, shape ``(len(ids), block.width)``.
    active
        Whether each row is offered (``False`` once retired).
    """

    #: Columns saved in the records when present (beyond ``key`` and ``columns``).
    optional: tuple[str, ...] = ()

    def __init__(self, name: str, key: str, block: FittedBlock, columns: Sequence[str]) -> None:
        self.name = name
        self.key = key
        self.block = block
        self.columns = list(columns)
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.records: list[dict[str, Any]] = []
        self.z: FloatArray = np.empty((0, block.width))
        self.active: BoolArray = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, item_id: str) -> int:
        """The row of ``item_id``; :class:`NotFoundError` if unknown."""
        row = self.index.get(str(item_id))
        if row is None:
            raise NotFoundError.for_field(self.key, item_id, "is not in the catalog")
        return row

    def upsert(self, df: pd.DataFrame) -> tuple[list[int], list[int]]:
        """Add the rows of ``df``; a known id updates its row in place and re-activates it.

        Everything is validated before anything is stored, so an invalid table changes nothing.
        Returns ``(new rows, updated rows)``.
        """
        check_table(df, self.name, self.key, self.columns)
        ids = parse_ids(df[self.key], f"{self.name}.{self.key}")
        z = self.block.encode_frame(df)
        extra = self._parse_extra(df, ids)
        cols = [c for c in [self.key, *self.columns, *self.optional] if c in df]
        records = [
            {str(k): _json_value(v) for k, v in rec.items()}
            for rec in df[cols].to_dict(orient="records")
        ]
        new_rows: list[int] = []
        new_index: list[int] = []
        updated: list[int] = []
        updated_index: list[int] = []
        for i, item_id in enumerate(ids):
            row = self.index.get(item_id)
            if row is None:
                row = len(self.ids)
                self.index[item_id] = row
                self.ids.append(item_id)
                self.records.append(records[i])
                new_rows.append(row)
                new_index.append(i)
            else:  # update in place and re-activate; learned state of its bundles stays
                self.records[row] = records[i]
                updated.append(row)
                updated_index.append(i)
        if updated:
            self.z[updated] = z[updated_index]
            self.active[updated] = True
            self._store_extra(updated, updated_index, extra)
        if new_rows:
            self.z = np.vstack([self.z, z[new_index]])
            self.active = np.concatenate([self.active, np.ones(len(new_rows), dtype=bool)])
            self._append_extra(new_index, extra)
        return new_rows, updated

    def retire(self, item_ids: Iterable[str]) -> None:
        """Clear the active flag of these items (all looked up before any is changed)."""
        rows = [self.row(i) for i in item_ids]
        self.active[rows] = False

    def set_active(self, flags: Sequence[Any]) -> None:
        """Restore saved active flags (one per row, from the start)."""
        for row, flag in enumerate(flags):
            self.active[row] = bool(flag)

    def frame(self) -> pd.DataFrame:
        """The records as a table, with an ``active`` column."""
        df = pd.DataFrame(self.records)
        df["active"] = self.active.tolist()
        return df

    # -- hooks for tables with more columns than features --------------------------------------
    def _parse_extra(self, df: pd.DataFrame, ids: Sequence[str]) -> dict[str, Any]:
        """Validated extra columns of ``df``, aligned with its rows."""
        return {}

    def _store_extra(self, rows: list[int], at: list[int], extra: dict[str, Any]) -> None:
        """Write ``extra[...][at]`` into existing ``rows``."""

    def _append_extra(self, at: list[int], extra: dict[str, Any]) -> None:
        """Append ``extra[...][at]`` as new rows."""


class DealTable(ItemTable):
    """Deals: an :class:`ItemTable` with each deal's city and validity window.

    Attributes
    ----------
    city
        Object array of each deal's city, ``""`` for a deal offered in every city (a missing
        city; as before the split, an empty city means the same).
    valid_from, valid_to
        Epoch seconds of each deal's validity window, NaN for an open bound.
    """

    optional = ("valid_from", "valid_to")

    def __init__(self, block: FittedBlock, columns: Sequence[str], *, city_column: str) -> None:
        super().__init__("deals", "deal_id", block, columns)
        self.city_column = city_column
        self.city: NDArray[np.object_] = np.empty(0, dtype=object)
        self.valid_from: FloatArray = np.empty(0)
        self.valid_to: FloatArray = np.empty(0)

    def _parse_extra(self, df: pd.DataFrame, ids: Sequence[str]) -> dict[str, Any]:
        n = len(ids)
        city = np.array(
            ["" if pd.isna(v) else str(v) for v in df[self.city_column]]
            if self.city_column in df.columns
            else [""] * n,
            dtype=object,
        )
        start = _to_epoch(df["valid_from"], "deals.valid_from") if "valid_from" in df else None
        end = _to_epoch(df["valid_to"], "deals.valid_to") if "valid_to" in df else None
        start = np.full(n, np.nan) if start is None else start
        end = np.full(n, np.nan) if end is None else end
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(end <= start)
        if bad.size:
            i = int(bad[0])
            raise ValidationError.for_field(
                f"deals.valid_to[{ids[i]}]",
                float(end[i]),
                f"must be after valid_from ({float(start[i])})",
            )
        return {"city": city, "valid_from": start, "valid_to": end}

    def _store_extra(self, rows: list[int], at: list[int], extra: dict[str, Any]) -> None:
        self.city[rows] = extra["city"][at]
        self.valid_from[rows] = extra["valid_from"][at]
        self.valid_to[rows] = extra["valid_to"][at]

    def _append_extra(self, at: list[int], extra: dict[str, Any]) -> None:
        self.city = np.concatenate([self.city, extra["city"][at]])
        self.valid_from = np.concatenate([self.valid_from, extra["valid_from"][at]])
        self.valid_to = np.concatenate([self.valid_to, extra["valid_to"][at]])
