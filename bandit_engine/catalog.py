"""The catalog: deals, courses, the bundles made of them, their feature vectors and eligibility.

A bundle is a (deal, course) pair. Bundles are either listed explicitly or generated from all pairs of
active deals and courses (new deals and courses then pair with everything active). Every bundle has a
feature vector ``z = [1, deal block, course block]`` built from its deal's and course's attributes with
the same field encoders as user profiles (:mod:`bandit_engine.features`), fitted on the catalog given at
construction. A bundle never shown before therefore has a meaningful vector, and policies that share
parameters across bundles (hybrid LinUCB, shared linear Thompson sampling, Vowpal Wabbit) score it from
what similar bundles taught (item cold start).

Eligibility for one decision, in order:

1. the bundle, its deal and its course are not retired;
2. the deal is valid now: ``valid_from <= now < valid_to`` (a missing bound is open);
3. the deal is in the user's city (``EligibilityRules.user_city`` names the profile field; a deal with no
   city is offered everywhere; a user whose city is unknown sees every city unless
   ``unknown_city="none"``);
4. if the caller passes ``candidates`` (an availability mask), only those of them that pass 1-3, in the
   caller's order.

Candidate sets are cached per city and reused until the catalog changes or the clock crosses a validity
boundary, so the serving path usually does no work here. Retiring keeps a bundle's id and features, so
decisions still pending on it learn normally and policies keep what it taught.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .errors import ConfigError, NotFoundError, ValidationError
from .features import Categorical, FieldSpec, FittedBlock, Numeric, fit_block, spec_from_dict

__all__ = [
    "DEFAULT_COURSE_FEATURES",
    "DEFAULT_DEAL_FEATURES",
    "CandidateSet",
    "Catalog",
    "EligibilityRules",
]

FloatArray = NDArray[np.float64]


class _AnyCity:
    """Cache key meaning "do not apply the city rule" (distinct from every real city)."""


_ANY_CITY = _AnyCity()

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


@dataclass(frozen=True)
class EligibilityRules:
    """Which bundles a user may be shown.

    Parameters
    ----------
    user_city
        ``"<platform>.<field>"`` of the user's city in a profile, or ``None`` to disable the city rule.
    deal_city
        Column of the deals table holding the deal's city.
    unknown_city
        ``"all"``: a user with no known city may see deals of every city; ``"none"``: only deals without
        a city.
    require_valid
        Apply the ``valid_from`` / ``valid_to`` window of deals.
    """

    user_city: str | None = "groupbuy.city"
    deal_city: str = "city"
    unknown_city: Literal["all", "none"] = "all"
    require_valid: bool = True

    def __post_init__(self) -> None:
        if self.user_city is not None and self.user_city.count(".") != 1:
            raise ConfigError.for_field(
                "rules.user_city", self.user_city, "must look like '<platform>.<field>' or be None"
            )
        if self.unknown_city not in ("all", "none"):
            raise ConfigError.for_field(
                "rules.unknown_city", self.unknown_city, "must be 'all' or 'none'"
            )

    def city_of(self, profile: Mapping[str, Mapping[str, Any] | None] | None) -> str | None:
        """The user's city from a profile dict, or ``None`` if unknown."""
        if self.user_city is None or not profile:
            return None
        platform, field = self.user_city.split(".")
        part = profile.get(platform)
        if not part:
            return None
        value = part.get(field)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return str(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_city": self.user_city,
            "deal_city": self.deal_city,
            "unknown_city": self.unknown_city,
            "require_valid": self.require_valid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EligibilityRules:
        return cls(**dict(data))


@dataclass(frozen=True, eq=False)
class CandidateSet:
    """Eligible bundles for one decision: ids, catalog rows and feature rows (aligned)."""

    ids: tuple[str, ...]
    rows: NDArray[np.intp]
    features: FloatArray


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


def _ids(values: Iterable[Any], field: str) -> list[str]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise ValidationError.for_field(field, v, "must not be missing")
        out.append(str(v))
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


class Catalog:
    """Deals, courses, bundles, their feature vectors and eligibility rules.

    Parameters
    ----------
    deals
        One row per deal: ``deal_id``, the city column (``rules.deal_city``), optional ``valid_from`` /
        ``valid_to`` (epoch seconds, datetimes or ISO strings) and the columns of ``deal_features``.
    courses
        One row per course: ``course_id`` and the columns of ``course_features``.
    bundles
        ``None`` to pair every deal with every course, or a frame with ``deal_id``, ``course_id`` and
        optionally ``bundle_id`` (default ``"<deal_id>+<course_id>"``).
    deal_features, course_features
        Field specs encoding deals and courses (see :mod:`bandit_engine.features`).
    rules
        Eligibility rules.

    Examples
    --------
    >>> import pandas as pd
    >>> deals = pd.DataFrame({"deal_id": ["d1", "d2"], "city": ["shanghai", "beijing"],
    ...                       "cuisine": ["hotpot", "sichuan"], "price": [88.0, 120.0],
    ...                       "discount": [0.2, 0.4]})
    >>> courses = pd.DataFrame({"course_id": ["c1"], "topic": ["python"], "format": ["video"],
    ...                         "price": [99.0], "rating": [4.6]})
    >>> catalog = Catalog(deals, courses)
    >>> catalog.candidates(city="shanghai", now=0.0).ids
    ('d1+c1',)
    """

    def __init__(
        self,
        deals: pd.DataFrame,
        courses: pd.DataFrame,
        *,
        bundles: pd.DataFrame | None = None,
        deal_features: Sequence[FieldSpec] = DEFAULT_DEAL_FEATURES,
        course_features: Sequence[FieldSpec] = DEFAULT_COURSE_FEATURES,
        rules: EligibilityRules | None = None,
    ) -> None:
        self.rules = rules if rules is not None else EligibilityRules()
        self.pair_all = bundles is None
        self.deal_features = tuple(deal_features)
        self.course_features = tuple(course_features)
        self._check_table(deals, "deals", "deal_id", self._deal_columns())
        self._check_table(courses, "courses", "course_id", self._course_columns())
        if deals.empty or courses.empty:
            raise ValidationError.for_field(
                "deals" if deals.empty else "courses", 0, "must have at least one row (rows given)"
            )
        self._deal_block: FittedBlock = fit_block(self.deal_features, deals, prefix="deal")
        self._course_block: FittedBlock = fit_block(self.course_features, courses, prefix="course")
        self._init_storage()
        self.add_deals(deals, _pair=False)
        self.add_courses(courses, _pair=False)
        if bundles is None:
            self._pair(range(len(self._deal_ids)), range(len(self._course_ids)))
        else:
            self.add_bundles(bundles)

    # -- construction helpers -----------------------------------------------------------------
    def _init_storage(self) -> None:
        self._deal_ids: list[str] = []
        self._deal_index: dict[str, int] = {}
        self._deal_city: list[str | None] = []
        self._deal_from = np.empty(0)
        self._deal_to = np.empty(0)
        self._deal_active: list[bool] = []
        self._deal_z = np.empty((0, self._deal_block.width))
        self._deal_records: list[dict[str, Any]] = []
        self._course_ids: list[str] = []
        self._course_index: dict[str, int] = {}
        self._course_active: list[bool] = []
        self._course_z = np.empty((0, self._course_block.width))
        self._course_records: list[dict[str, Any]] = []
        self._bundle_ids: list[str] = []
        self._bundle_index: dict[str, int] = {}
        self._bundle_deal: list[int] = []
        self._bundle_course: list[int] = []
        self._bundle_retired: list[bool] = []
        self._z = np.empty((0, self.n_arm_features))
        self.version = 0
        self._cache: dict[str | _AnyCity | None, tuple[int, float, float, CandidateSet]] = {}
        self._arrays_version = -1

    def _deal_columns(self) -> list[str]:
        cols = [f.name for f in self.deal_features]
        if self.rules.user_city is not None and self.rules.deal_city not in cols:
            cols.append(self.rules.deal_city)
        return cols

    def _course_columns(self) -> list[str]:
        return [f.name for f in self.course_features]

    @staticmethod
    def _check_table(df: pd.DataFrame, name: str, key: str, columns: Sequence[str]) -> None:
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

    # -- sizes and names ---------------------------------------------------------------------
    @property
    def n_arm_features(self) -> int:
        """Length of a bundle feature vector (the leading 1 included)."""
        return 1 + self._deal_block.width + self._course_block.width

    @property
    def feature_names(self) -> list[str]:
        return ["bundle.bias", *self._deal_block.names, *self._course_block.names]

    @property
    def bundle_ids(self) -> tuple[str, ...]:
        """Every bundle id ever added, retired ones included."""
        return tuple(self._bundle_ids)

    def __len__(self) -> int:
        return len(self._bundle_ids)

    def __contains__(self, bundle_id: object) -> bool:
        return bundle_id in self._bundle_index

    # -- adding ------------------------------------------------------------------------------
    def add_deals(self, deals: pd.DataFrame, *, _pair: bool = True) -> list[str]:
        """Add deals (same columns as at construction). In all-pairs mode they pair with every active
        course. Returns the new bundle ids. Re-adding a retired deal id re-activates it."""
        self._check_table(deals, "deals", "deal_id", self._deal_columns())
        ids = _ids(deals["deal_id"], "deals.deal_id")
        z = self._deal_block.encode_frame(deals)
        city = (
            [None if pd.isna(v) else str(v) for v in deals[self.rules.deal_city]]
            if self.rules.deal_city in deals.columns
            else [None] * len(ids)
        )
        vf = _to_epoch(deals["valid_from"], "deals.valid_from") if "valid_from" in deals else None
        vt = _to_epoch(deals["valid_to"], "deals.valid_to") if "valid_to" in deals else None
        cols = [
            c for c in ["deal_id", *self._deal_columns(), "valid_from", "valid_to"] if c in deals
        ]
        records = deals[cols].to_dict(orient="records")
        new_rows: list[int] = []
        new_from: list[float] = []
        new_to: list[float] = []
        new_index: list[int] = []
        for i, deal_id in enumerate(ids):
            start = math.nan if vf is None else float(vf[i])
            end = math.nan if vt is None else float(vt[i])
            if not (math.isnan(start) or math.isnan(end)) and end <= start:
                raise ValidationError.for_field(
                    f"deals.valid_to[{deal_id}]", end, f"must be after valid_from ({start})"
                )
            row = self._deal_index.get(deal_id)
            rec = {str(k): _json_value(v) for k, v in records[i].items()}
            if row is None:
                row = len(self._deal_ids)
                self._deal_index[deal_id] = row
                self._deal_ids.append(deal_id)
                self._deal_city.append(city[i])
                self._deal_active.append(True)
                self._deal_records.append(rec)
                new_from.append(start)
                new_to.append(end)
                new_rows.append(row)
                new_index.append(i)
            else:  # update in place and re-activate; learned state of its bundles stays
                self._deal_city[row] = city[i]
                self._deal_active[row] = True
                self._deal_records[row] = rec
                self._deal_from[row] = start
                self._deal_to[row] = end
                self._deal_z[row] = z[i]
                self._refresh_bundle_features(deal_rows={row})
        if new_rows:
            self._deal_from = np.concatenate([self._deal_from, new_from])
            self._deal_to = np.concatenate([self._deal_to, new_to])
            self._deal_z = np.vstack([self._deal_z, z[new_index]])
        self._touch()
        if _pair and self.pair_all and new_rows:
            active_courses = [c for c, a in enumerate(self._course_active) if a]
            return self._pair(new_rows, active_courses)
        return []

    def add_courses(self, courses: pd.DataFrame, *, _pair: bool = True) -> list[str]:
        """Add courses. In all-pairs mode they pair with every active deal. Returns new bundle ids."""
        self._check_table(courses, "courses", "course_id", self._course_columns())
        ids = _ids(courses["course_id"], "courses.course_id")
        z = self._course_block.encode_frame(courses)
        cols = ["course_id", *self._course_columns()]
        records = courses[cols].to_dict(orient="records")
        new_rows: list[int] = []
        new_index: list[int] = []
        for i, course_id in enumerate(ids):
            rec = {str(k): _json_value(v) for k, v in records[i].items()}
            row = self._course_index.get(course_id)
            if row is None:
                row = len(self._course_ids)
                self._course_index[course_id] = row
                self._course_ids.append(course_id)
                self._course_active.append(True)
                self._course_records.append(rec)
                new_rows.append(row)
                new_index.append(i)
            else:
                self._course_active[row] = True
                self._course_records[row] = rec
                self._course_z[row] = z[i]
                self._refresh_bundle_features(course_rows={row})
        if new_rows:
            self._course_z = np.vstack([self._course_z, z[new_index]])
        self._touch()
        if _pair and self.pair_all and new_rows:
            active_deals = [d for d, a in enumerate(self._deal_active) if a]
            return self._pair(active_deals, new_rows)
        return []

    def add_bundles(self, bundles: pd.DataFrame) -> list[str]:
        """Add explicit (deal, course) bundles; their deal and course must exist. Returns their ids."""
        if not isinstance(bundles, pd.DataFrame):
            raise ValidationError.for_field(
                "bundles", type(bundles).__name__, "must be a DataFrame"
            )
        for col in ("deal_id", "course_id"):
            if col not in bundles.columns:
                raise ValidationError.for_field(
                    f"bundles.{col}", sorted(bundles.columns.astype(str)), "is a required column"
                )
        deal_ids = _ids(bundles["deal_id"], "bundles.deal_id")
        course_ids = _ids(bundles["course_id"], "bundles.course_id")
        names = (
            _ids(bundles["bundle_id"], "bundles.bundle_id")
            if "bundle_id" in bundles.columns
            else [f"{d}+{c}" for d, c in zip(deal_ids, course_ids, strict=True)]
        )
        pairs = []
        for name, d, c in zip(names, deal_ids, course_ids, strict=True):
            if d not in self._deal_index:
                raise NotFoundError.for_field("bundles.deal_id", d, "is not a known deal")
            if c not in self._course_index:
                raise NotFoundError.for_field("bundles.course_id", c, "is not a known course")
            pairs.append((name, self._deal_index[d], self._course_index[c]))
        return self._add_pairs(pairs)

    def _pair(self, deal_rows: Iterable[int], course_rows: Iterable[int]) -> list[str]:
        course_rows = list(course_rows)
        pairs = [
            (f"{self._deal_ids[d]}+{self._course_ids[c]}", d, c)
            for d in deal_rows
            for c in course_rows
        ]
        return self._add_pairs([p for p in pairs if p[0] not in self._bundle_index])

    def _add_pairs(self, pairs: Sequence[tuple[str, int, int]]) -> list[str]:
        added = []
        new_z = []
        for name, d, c in pairs:
            row = self._bundle_index.get(name)
            if row is not None:
                if (self._bundle_deal[row], self._bundle_course[row]) != (d, c):
                    raise ValidationError.for_field(
                        "bundles.bundle_id", name, "already names a different (deal, course) pair"
                    )
                self._bundle_retired[row] = False
                continue
            self._bundle_index[name] = len(self._bundle_ids)
            self._bundle_ids.append(name)
            self._bundle_deal.append(d)
            self._bundle_course.append(c)
            self._bundle_retired.append(False)
            new_z.append(np.concatenate(([1.0], self._deal_z[d], self._course_z[c])))
            added.append(name)
        if new_z:
            self._z = np.vstack([self._z, np.asarray(new_z)])
        self._touch()
        return added

    def _refresh_bundle_features(
        self, deal_rows: set[int] | None = None, course_rows: set[int] | None = None
    ) -> None:
        for b, (d, c) in enumerate(zip(self._bundle_deal, self._bundle_course, strict=True)):
            if (deal_rows and d in deal_rows) or (course_rows and c in course_rows):
                self._z[b] = np.concatenate(([1.0], self._deal_z[d], self._course_z[c]))

    # -- retiring ----------------------------------------------------------------------------
    def retire_deals(self, deal_ids: Iterable[str]) -> None:
        """Stop offering these deals (and their bundles). Learned state is kept."""
        rows = [self._lookup(self._deal_index, d, "deal_id") for d in deal_ids]
        for row in rows:
            self._deal_active[row] = False
        self._touch()

    def retire_courses(self, course_ids: Iterable[str]) -> None:
        """Stop offering these courses (and their bundles). Learned state is kept."""
        rows = [self._lookup(self._course_index, c, "course_id") for c in course_ids]
        for row in rows:
            self._course_active[row] = False
        self._touch()

    def retire_bundles(self, bundle_ids: Iterable[str]) -> None:
        """Stop offering these bundles. Learned state is kept; ``add_bundles`` re-activates."""
        rows = [self._lookup(self._bundle_index, b, "bundle_id") for b in bundle_ids]
        for row in rows:
            self._bundle_retired[row] = True
        self._touch()

    @staticmethod
    def _lookup(index: Mapping[str, int], key: str, field: str) -> int:
        row = index.get(str(key))
        if row is None:
            raise NotFoundError.for_field(field, key, "is not in the catalog")
        return row

    def _touch(self) -> None:
        self.version += 1
        self._cache.clear()

    # -- lookups -----------------------------------------------------------------------------
    def bundle(self, bundle_id: str) -> dict[str, Any]:
        """A bundle's deal and course records, its feature vector and whether it is retired."""
        row = self._lookup(self._bundle_index, bundle_id, "bundle_id")
        d, c = self._bundle_deal[row], self._bundle_course[row]
        return {
            "bundle_id": bundle_id,
            "deal": dict(self._deal_records[d]),
            "course": dict(self._course_records[c]),
            "active": self._bundle_active(row),
        }

    def parts(self, bundle_id: str) -> tuple[str, str]:
        """``(deal_id, course_id)`` of a bundle."""
        row = self._lookup(self._bundle_index, bundle_id, "bundle_id")
        return self._deal_ids[self._bundle_deal[row]], self._course_ids[self._bundle_course[row]]

    def features(self, bundle_ids: Sequence[str]) -> FloatArray:
        """Feature rows of the given bundles, shape ``(len(bundle_ids), n_arm_features)``."""
        rows = [self._lookup(self._bundle_index, b, "bundle_id") for b in bundle_ids]
        return self._z[rows]

    def _bundle_active(self, row: int) -> bool:
        return (
            not self._bundle_retired[row]
            and self._deal_active[self._bundle_deal[row]]
            and self._course_active[self._bundle_course[row]]
        )

    # -- eligibility -------------------------------------------------------------------------
    def _refresh_arrays(self) -> None:
        if self._arrays_version == self.version:
            return
        deal = np.asarray(self._bundle_deal, dtype=np.intp)
        course = np.asarray(self._bundle_course, dtype=np.intp)
        active = ~np.asarray(self._bundle_retired, dtype=bool)
        if deal.size:
            active &= np.asarray(self._deal_active, dtype=bool)[deal]
            active &= np.asarray(self._course_active, dtype=bool)[course]
        self._active = active
        self._b_from = self._deal_from[deal] if deal.size else np.empty(0)
        self._b_to = self._deal_to[deal] if deal.size else np.empty(0)
        cities = np.asarray([self._deal_city[d] or "" for d in self._bundle_deal], dtype=object)
        self._b_city = cities
        self._arrays_version = self.version

    def candidates(
        self,
        *,
        city: str | None,
        now: float,
        restrict: Sequence[str] | None = None,
    ) -> CandidateSet:
        """Eligible bundles for a user in ``city`` (``None``: unknown) at time ``now``.

        ``restrict`` is the caller's availability mask: a sequence of bundle ids; unknown ids raise
        :class:`~bandit_engine.errors.NotFoundError`, known but ineligible ones are dropped, and an
        empty result raises :class:`~bandit_engine.errors.ValidationError`.
        """
        base = self._eligible(city, now)
        if restrict is None:
            if not base.ids:
                raise ValidationError.for_field(
                    "candidates", [], f"no bundle is eligible for city {city!r} at time {now}"
                )
            return base
        allowed = set(base.rows.tolist())
        rows = []
        for bundle_id in restrict:
            row = self._bundle_index.get(bundle_id)
            if row is None:
                raise NotFoundError.for_field("candidates", bundle_id, "is not a known bundle")
            if row in allowed:
                rows.append(row)
        if not rows:
            raise ValidationError.for_field(
                "candidates", list(restrict)[:10], "contains no bundle eligible for this user now"
            )
        r = np.asarray(rows, dtype=np.intp)
        return CandidateSet(tuple(self._bundle_ids[i] for i in rows), r, self._z[r])

    def offered(self, now: float) -> CandidateSet:
        """Every bundle offered to someone at time ``now``: active and valid, in any city (batch
        scoring uses it; per-user decisions use :meth:`candidates`)."""
        return self._eligible(_ANY_CITY, now)

    def _eligible(self, city: str | _AnyCity | None, now: float) -> CandidateSet:
        cached = self._cache.get(city)
        if cached is not None and cached[0] == self.version and cached[1] <= now < cached[2]:
            return cached[3]
        self._refresh_arrays()
        mask = self._active.copy()
        lo, hi = -math.inf, math.inf
        if self.rules.require_valid and mask.size:
            vf, vt = self._b_from, self._b_to
            with np.errstate(invalid="ignore"):
                mask &= ~(vf > now)
                mask &= ~(vt <= now)
            bounds = np.concatenate([vf[~np.isnan(vf)], vt[~np.isnan(vt)]])
            if bounds.size:
                past = bounds[bounds <= now]
                future = bounds[bounds > now]
                lo = float(past.max()) if past.size else -math.inf
                hi = float(future.min()) if future.size else math.inf
        if self.rules.user_city is not None and mask.size and not isinstance(city, _AnyCity):
            no_city = self._b_city == ""
            if city is None:
                if self.rules.unknown_city == "none":
                    mask &= no_city
            else:
                mask &= no_city | (self._b_city == city)
        rows = np.flatnonzero(mask).astype(np.intp)
        cs = CandidateSet(tuple(self._bundle_ids[i] for i in rows), rows, self._z[rows])
        cs.features.setflags(write=False)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[city] = (self.version, lo, hi, cs)
        return cs

    def eligible_for(
        self,
        profile: Mapping[str, Mapping[str, Any] | None] | None,
        now: float,
        restrict: Sequence[str] | None = None,
    ) -> CandidateSet:
        """Candidates for a profile dict (its city read through ``rules.user_city``)."""
        return self.candidates(city=self.rules.city_of(profile), now=now, restrict=restrict)

    # -- tables out --------------------------------------------------------------------------
    def deals(self) -> pd.DataFrame:
        """The deals table with an ``active`` column."""
        df = pd.DataFrame(self._deal_records)
        df["active"] = self._deal_active
        return df

    def courses(self) -> pd.DataFrame:
        """The courses table with an ``active`` column."""
        df = pd.DataFrame(self._course_records)
        df["active"] = self._course_active
        return df

    def bundles(self) -> pd.DataFrame:
        """One row per bundle: ``bundle_id``, ``deal_id``, ``course_id``, ``active``."""
        return pd.DataFrame(
            {
                "bundle_id": self._bundle_ids,
                "deal_id": [self._deal_ids[d] for d in self._bundle_deal],
                "course_id": [self._course_ids[c] for c in self._bundle_course],
                "active": [self._bundle_active(b) for b in range(len(self._bundle_ids))],
            }
        )

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON state (encoders, tables, bundles, retired flags, rules)."""
        return {
            "rules": self.rules.to_dict(),
            "pair_all": self.pair_all,
            "deal_features": [f.to_dict() for f in self.deal_features],
            "course_features": [f.to_dict() for f in self.course_features],
            "deal_block": self._deal_block.to_dict(),
            "course_block": self._course_block.to_dict(),
            "deals": self._deal_records,
            "deal_active": self._deal_active,
            "courses": self._course_records,
            "course_active": self._course_active,
            "bundles": [
                [b, self._deal_ids[d], self._course_ids[c], r]
                for b, d, c, r in zip(
                    self._bundle_ids,
                    self._bundle_deal,
                    self._bundle_course,
                    self._bundle_retired,
                    strict=True,
                )
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        """Rebuild a catalog saved by :meth:`to_dict` with the same encoders (no refit)."""
        try:
            self = cls.__new__(cls)
            self.rules = EligibilityRules.from_dict(data["rules"])
            self.pair_all = bool(data["pair_all"])
            self.deal_features = tuple(spec_from_dict(f) for f in data["deal_features"])
            self.course_features = tuple(spec_from_dict(f) for f in data["course_features"])
            self._deal_block = FittedBlock.from_dict(data["deal_block"])
            self._course_block = FittedBlock.from_dict(data["course_block"])
            self._init_storage()
            self.add_deals(pd.DataFrame(data["deals"]), _pair=False)
            self.add_courses(pd.DataFrame(data["courses"]), _pair=False)
            for row, active in enumerate(data["deal_active"]):
                self._deal_active[row] = bool(active)
            for row, active in enumerate(data["course_active"]):
                self._course_active[row] = bool(active)
            pairs = [
                (str(b), self._deal_index[str(d)], self._course_index[str(c)])
                for b, d, c, _ in data["bundles"]
            ]
            self._add_pairs(pairs)
            for row, (_, _, _, retired) in enumerate(data["bundles"]):
                self._bundle_retired[row] = bool(retired)
            self._touch()
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, ValidationError | ConfigError | NotFoundError):
                raise
            raise ValidationError(
                f"malformed catalog state: {type(exc).__name__}: {exc}", field="catalog"
            ) from None
        return self
