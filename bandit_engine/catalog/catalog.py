"""The :class:`Catalog`: deals, courses and their bundles behind one object.

The catalog owns the two item tables (:mod:`.tables`), the bundle index over them (:mod:`.bundles`)
and the eligibility rules with their cache (:mod:`.eligibility`). It fits the deal and course
encoders at construction, keeps a ``version`` that every change bumps (and that empties the
eligibility cache), and saves and restores all of it as JSON (:meth:`Catalog.to_dict`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, NotFoundError, ValidationError
from ..features import FieldSpec, FittedBlock, fit_block, spec_from_dict
from .bundles import BundleIndex, CandidateSet, IntArray
from .eligibility import ANY_CITY, Eligibility, EligibilityRules, apply_availability
from .grid import GridCandidates, GridEligibility
from .tables import (
    DEFAULT_COURSE_FEATURES,
    DEFAULT_DEAL_FEATURES,
    DealTable,
    FloatArray,
    ItemTable,
    check_table,
    parse_ids,
)

__all__ = ["Catalog", "PairWith"]

#: How :meth:`Catalog.add_deals` / :meth:`Catalog.add_courses` pair new items in a catalog with
#: an explicit bundle list: ``None`` (unpaired, with a warning), ``"all"`` or a list of ids.
PairWith = str | Sequence[str] | None

logger = logging.getLogger("bandit_engine.catalog")


def _warn_unpaired(what: str, ids: list[str], other: str) -> None:
    shown = ids[:10] + (["..."] if len(ids) > 10 else [])
    logger.warning(
        "%s %s were added to a catalog with an explicit bundle list and are in no bundle: nothing "
        "offers them until add_bundles names them (or add them with pair_with='all' or a list of "
        "%s ids)",
        what,
        shown,
        other,
    )


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
    materialize
        With ``bundles=None``: ``True`` (default) lists every pair as a row; ``False`` keeps only
        the deals and courses, and a bundle ``"<deal_id>+<course_id>"`` exists as that pair,
        computed when needed (its features, eligibility, parts). Catalogs of thousands of deals
        and courses need ``False``: 1,000,000 listed pairs cost about 0.5 GB before any model.
        Only grid policies (``factored_ucb``, ``factored_ts``) decide over an unlisted catalog,
        deal ids must not contain ``"+"`` (bundle ids are split at the first one), and single
        bundles cannot be retired (retire the deal or the course).

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
        materialize: bool = True,
    ) -> None:
        self.rules = rules if rules is not None else EligibilityRules()
        self.pair_all = bundles is None
        if not isinstance(materialize, bool):
            raise ConfigError.for_field("materialize", materialize, "must be True or False")
        if not materialize and bundles is not None:
            raise ConfigError.for_field(
                "materialize", materialize, "can be False only with bundles=None (all pairs)"
            )
        self.materialized = materialize
        self.deal_features = tuple(deal_features)
        self.course_features = tuple(course_features)
        check_table(deals, "deals", "deal_id", self._deal_columns())
        check_table(courses, "courses", "course_id", self._course_columns())
        if deals.empty or courses.empty:
            raise ValidationError.for_field(
                "deals" if deals.empty else "courses", 0, "must have at least one row (rows given)"
            )
        self._init_storage(
            fit_block(self.deal_features, deals, prefix="deal"),
            fit_block(self.course_features, courses, prefix="course"),
        )
        self.add_deals(deals, _pair=False)
        self.add_courses(courses, _pair=False)
        if bundles is None and not self.materialized:
            self._touch()
        elif bundles is None:
            self._bundles.pair(range(len(self._deals)), range(len(self._courses)))
            self._touch()
        else:
            self.add_bundles(bundles)

    # -- construction helpers -----------------------------------------------------------------
    def _init_storage(self, deal_block: FittedBlock, course_block: FittedBlock) -> None:
        self._deals = DealTable(deal_block, self._deal_columns(), city_column=self.rules.deal_city)
        self._courses = ItemTable("courses", "course_id", course_block, self._course_columns())
        self._bundles = BundleIndex(self._deals, self._courses)
        self._eligibility = Eligibility(self.rules, self._bundles)
        self._grids = GridEligibility(
            self.rules, self._deals, self._courses, self._bundles if self.materialized else None
        )
        self.version = 0

    def _deal_columns(self) -> list[str]:
        cols = [f.name for f in self.deal_features]
        if self.rules.user_city is not None and self.rules.deal_city not in cols:
            cols.append(self.rules.deal_city)
        return cols

    def _course_columns(self) -> list[str]:
        return [f.name for f in self.course_features]

    def _touch(self) -> None:
        """Record a change: bump the version and empty the eligibility cache."""
        self.version += 1
        self._eligibility.clear()
        self._grids.clear()

    # -- sizes and names ---------------------------------------------------------------------
    @property
    def n_arm_features(self) -> int:
        """Length of a bundle feature vector (the leading 1 included)."""
        return 1 + self._deals.block.width + self._courses.block.width

    @property
    def feature_names(self) -> list[str]:
        return ["bundle.bias", *self._deals.block.names, *self._courses.block.names]

    @property
    def bundle_ids(self) -> tuple[str, ...]:
        """Every bundle id ever added, retired ones included (listed catalogs only)."""
        self._need_listed("bundle_ids")
        return self._bundles.ids

    def __len__(self) -> int:
        """Number of bundles: listed rows, or every (deal, course) pair of an unlisted catalog."""
        if not self.materialized:
            return len(self._deals) * len(self._courses)
        return len(self._bundles)

    def __contains__(self, bundle_id: object) -> bool:
        if not self.materialized:
            return isinstance(bundle_id, str) and self._split(bundle_id) is not None
        return bundle_id in self._bundles

    def _need_listed(self, what: str) -> None:
        if not self.materialized:
            raise ConfigError.for_field(
                what,
                f"a catalog of {len(self):,} unlisted pairs",
                "needs a listed catalog (materialize=True); decide over this one with a grid "
                "policy (factored_ucb, factored_ts)",
            )

    def _split(self, bundle_id: str) -> tuple[int, int] | None:
        """``(deal row, course row)`` of ``"<deal_id>+<course_id>"`` in an unlisted catalog."""
        deal_id, plus, course_id = bundle_id.partition("+")
        d = self._deals.index.get(deal_id) if plus else None
        c = self._courses.index.get(course_id) if d is not None else None
        return None if d is None or c is None else (d, c)

    def _split_or_raise(self, bundle_id: str) -> tuple[int, int]:
        parts = self._split(str(bundle_id))
        if parts is None:
            raise NotFoundError.for_field("bundle_id", bundle_id, "is not in the catalog")
        return parts

    # -- adding ------------------------------------------------------------------------------
    def add_deals(
        self,
        deals: pd.DataFrame,
        *,
        pair_with: PairWith = None,
        _pair: bool = True,
    ) -> list[str]:
        """Add deals (same columns as at construction). Returns the new bundle ids. Re-adding a
        retired deal id re-activates it.

        In all-pairs mode new deals pair with every active course. With an explicit bundle list
        a new deal is in no bundle until one names it: ``pair_with="all"`` pairs each new deal
        with every active course, ``pair_with=[course ids]`` with those; without ``pair_with``
        the deals are added unpaired and a warning names them (on the ``bandit_engine.catalog``
        logger): nothing offers them until :meth:`add_bundles` does.
        """
        if not self.materialized and "deal_id" in deals.columns:
            for deal_id in deals["deal_id"].astype(str):
                if "+" in deal_id:
                    raise ValidationError.for_field(
                        "deals.deal_id", deal_id, "must not contain '+' in an unlisted catalog"
                    )
        partners = self._partners(pair_with, self._courses, "course") if _pair else None
        if _pair and self.materialized and "deal_id" in deals.columns:
            fresh = {str(d) for d in deals["deal_id"]} - set(self._deals.index)
            n = len(partners) if partners is not None else int(self._courses.active.sum())
            if self.pair_all or partners is not None:
                self._bundles.check_room(len(fresh) * n)
        new_rows, updated = self._deals.upsert(deals)
        self._bundles.refresh(deal_rows=updated)
        self._touch()
        if _pair and self.materialized and new_rows:
            if self.pair_all or partners is not None:
                courses = (
                    partners if partners is not None else self._courses.active.nonzero()[0].tolist()
                )
                added = self._bundles.pair(new_rows, courses)
                self._touch()
                return added
            _warn_unpaired("deals", [self._deals.ids[r] for r in new_rows], "course")
        return []

    def add_courses(
        self,
        courses: pd.DataFrame,
        *,
        pair_with: PairWith = None,
        _pair: bool = True,
    ) -> list[str]:
        """Add courses. Returns the new bundle ids. Pairing as in :meth:`add_deals`, with deals:
        all-pairs mode pairs new courses with every active deal; an explicit bundle list pairs
        them by ``pair_with`` (``"all"`` active deals, or a list of deal ids) or warns."""
        partners = self._partners(pair_with, self._deals, "deal") if _pair else None
        if _pair and self.materialized and "course_id" in courses.columns:
            fresh = {str(c) for c in courses["course_id"]} - set(self._courses.index)
            n = len(partners) if partners is not None else int(self._deals.active.sum())
            if self.pair_all or partners is not None:
                self._bundles.check_room(len(fresh) * n)
        new_rows, updated = self._courses.upsert(courses)
        self._bundles.refresh(course_rows=updated)
        self._touch()
        if _pair and self.materialized and new_rows:
            if self.pair_all or partners is not None:
                deals = (
                    partners if partners is not None else self._deals.active.nonzero()[0].tolist()
                )
                added = self._bundles.pair(deals, new_rows)
                self._touch()
                return added
            _warn_unpaired("courses", [self._courses.ids[r] for r in new_rows], "deal")
        return []

    def _partners(self, pair_with: PairWith, table: ItemTable, kind: str) -> list[int] | None:
        """The rows ``pair_with`` names in ``table`` (``None`` when not given)."""
        if pair_with is None:
            return None
        if self.pair_all:
            if pair_with == "all":
                return None  # every new item pairs with everything already
            raise ConfigError.for_field(
                "pair_with", pair_with, "must be None or 'all' in an all-pairs catalog"
            )
        if pair_with == "all":
            return list(table.active.nonzero()[0].tolist())
        if isinstance(pair_with, str) or not isinstance(pair_with, Sequence):
            raise ConfigError.for_field(
                "pair_with", pair_with, f"must be 'all' or a list of {kind} ids"
            )
        rows = []
        for item in pair_with:
            if str(item) not in table.index:
                raise NotFoundError.for_field("pair_with", item, f"is not a known {kind}")
            rows.append(int(table.index[str(item)]))
        return rows

    def add_bundles(self, bundles: pd.DataFrame) -> list[str]:
        """Add explicit (deal, course) bundles; their deal and course must exist. Returns their ids."""
        self._need_listed("add_bundles")
        if not isinstance(bundles, pd.DataFrame):
            raise ValidationError.for_field(
                "bundles", type(bundles).__name__, "must be a DataFrame"
            )
        for col in ("deal_id", "course_id"):
            if col not in bundles.columns:
                raise ValidationError.for_field(
                    f"bundles.{col}", sorted(bundles.columns.astype(str)), "is a required column"
                )
        deal_ids = parse_ids(bundles["deal_id"], "bundles.deal_id")
        course_ids = parse_ids(bundles["course_id"], "bundles.course_id")
        names = (
            parse_ids(bundles["bundle_id"], "bundles.bundle_id")
            if "bundle_id" in bundles.columns
            else [f"{d}+{c}" for d, c in zip(deal_ids, course_ids, strict=True)]
        )
        deal_index, course_index = self._deals.index, self._courses.index
        pairs = []
        for name, d, c in zip(names, deal_ids, course_ids, strict=True):
            if d not in deal_index:
                raise NotFoundError.for_field("bundles.deal_id", d, "is not a known deal")
            if c not in course_index:
                raise NotFoundError.for_field("bundles.course_id", c, "is not a known course")
            pairs.append((name, deal_index[d], course_index[c]))
        added = self._bundles.add(pairs)
        self._touch()
        return added

    # -- retiring ----------------------------------------------------------------------------
    def retire_deals(self, deal_ids: Iterable[str]) -> None:
        """Stop offering these deals (and their bundles). Learned state is kept."""
        self._deals.retire(deal_ids)
        self._touch()

    def retire_courses(self, course_ids: Iterable[str]) -> None:
        """Stop offering these courses (and their bundles). Learned state is kept."""
        self._courses.retire(course_ids)
        self._touch()

    def retire_bundles(self, bundle_ids: Iterable[str]) -> None:
        """Stop offering these bundles. Learned state is kept; ``add_bundles`` re-activates."""
        self._need_listed("retire_bundles")
        self._bundles.retire(bundle_ids)
        self._touch()

    # -- lookups -----------------------------------------------------------------------------
    def bundle(self, bundle_id: str) -> dict[str, Any]:
        """A bundle's deal and course records, its feature vector and whether it is retired."""
        if not self.materialized:
            d, c = self._split_or_raise(bundle_id)
            return {
                "bundle_id": bundle_id,
                "deal": dict(self._deals.records[d]),
                "course": dict(self._courses.records[c]),
                "active": bool(self._deals.active[d] and self._courses.active[c]),
            }
        row = self._bundles.row(bundle_id)
        d, c = self._bundles.parts(row)
        return {
            "bundle_id": bundle_id,
            "deal": dict(self._deals.records[d]),
            "course": dict(self._courses.records[c]),
            "active": self._bundles.active(row),
        }

    def parts(self, bundle_id: str) -> tuple[str, str]:
        """``(deal_id, course_id)`` of a bundle."""
        if not self.materialized:
            d, c = self._split_or_raise(bundle_id)
            return self._deals.ids[d], self._courses.ids[c]
        return self._bundles.part_ids(bundle_id)

    def row(self, bundle_id: str) -> int:
        """The catalog row of a bundle (stable: rows are never removed); NotFoundError if unknown."""
        self._need_listed("row")
        return self._bundles.row(bundle_id)

    def bundle_at(self, row: int) -> str:
        """The id of bundle row ``row`` (listed catalogs)."""
        self._need_listed("bundle_at")
        return self._bundles.id_at(row)

    def part_rows(self, rows: Sequence[int] | IntArray) -> tuple[IntArray, IntArray]:
        """``(deal rows, course rows)`` of the given bundle rows. Deal and course rows are stable
        (tables only grow), so they can index per-part state."""
        self._need_listed("part_rows")
        return self._bundles.part_rows(rows)

    def features(self, bundle_ids: Sequence[str]) -> FloatArray:
        """Feature rows of the given bundles, shape ``(len(bundle_ids), n_arm_features)``."""
        if not self.materialized:
            parts = [self._split_or_raise(b) for b in bundle_ids]
            d = np.asarray([p[0] for p in parts], dtype=np.intp)
            c = np.asarray([p[1] for p in parts], dtype=np.intp)
            return np.hstack([np.ones((len(parts), 1)), self._deals.z[d], self._courses.z[c]])
        return self._bundles.features([self._bundles.row(b) for b in bundle_ids])

    # -- eligibility -------------------------------------------------------------------------
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
        self._need_listed("candidates")
        base = self._eligibility.eligible(city, now, self.version)
        if restrict is None:
            if not base.ids:
                raise ValidationError.for_field(
                    "candidates", [], f"no bundle is eligible for city {city!r} at time {now}"
                )
            return base
        return apply_availability(base, restrict, self._bundles)

    def offered(self, now: float) -> CandidateSet:
        """Every bundle offered to someone at time ``now``: active and valid, in any city (batch
        scoring uses it; per-user decisions use :meth:`candidates`)."""
        self._need_listed("offered")
        return self._eligibility.eligible(ANY_CITY, now, self.version)

    def eligible_for(
        self,
        profile: Mapping[str, Mapping[str, Any] | None] | None,
        now: float,
        restrict: Sequence[str] | None = None,
    ) -> CandidateSet:
        """Candidates for a profile dict (its city read through ``rules.user_city``)."""
        return self.candidates(city=self.rules.city_of(profile), now=now, restrict=restrict)

    def grid(self, *, city: str | None, now: float) -> GridCandidates:
        """Eligible deals x active courses for a user in ``city`` at ``now`` (pair-all catalogs):
        every pair is a candidate. The same tuples come back while nothing changed (cached per
        city like :meth:`candidates`)."""
        grid = self._grids.eligible(city, now, self.version)
        if not grid.deal_ids or not grid.course_ids:
            raise ValidationError.for_field(
                "candidates", [], f"no bundle is eligible for city {city!r} at time {now}"
            )
        return grid

    def grid_for(
        self, profile: Mapping[str, Mapping[str, Any] | None] | None, now: float
    ) -> GridCandidates:
        """:meth:`grid` for a profile dict (its city read through ``rules.user_city``)."""
        return self.grid(city=self.rules.city_of(profile), now=now)

    @property
    def deal_z(self) -> FloatArray:
        """Encoded deal features, one row per deal row (read-only view)."""
        z = self._deals.z.view()
        z.setflags(write=False)
        return z

    @property
    def course_z(self) -> FloatArray:
        """Encoded course features, one row per course row (read-only view)."""
        z = self._courses.z.view()
        z.setflags(write=False)
        return z

    @property
    def deal_feature_names(self) -> list[str]:
        return list(self._deals.block.names)

    @property
    def course_feature_names(self) -> list[str]:
        return list(self._courses.block.names)

    # -- tables out --------------------------------------------------------------------------
    def deals(self) -> pd.DataFrame:
        """The deals table with an ``active`` column."""
        return self._deals.frame()

    def courses(self) -> pd.DataFrame:
        """The courses table with an ``active`` column."""
        return self._courses.frame()

    def bundles(self) -> pd.DataFrame:
        """One row per bundle: ``bundle_id``, ``deal_id``, ``course_id``, ``active``."""
        self._need_listed("bundles")
        return self._bundles.frame()

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON state (encoders, tables, bundles, retired flags, rules)."""
        out: dict[str, Any] = {
            "rules": self.rules.to_dict(),
            "pair_all": self.pair_all,
            "deal_features": [f.to_dict() for f in self.deal_features],
            "course_features": [f.to_dict() for f in self.course_features],
            "deal_block": self._deals.block.to_dict(),
            "course_block": self._courses.block.to_dict(),
            "deals": self._deals.records,
            "deal_active": self._deals.active.tolist(),
            "courses": self._courses.records,
            "course_active": self._courses.active.tolist(),
            "bundles": self._bundles.to_list(),
        }
        if not self.materialized:  # written only when set: listed catalogs keep their layout
            out["materialize"] = False
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        """Rebuild a catalog saved by :meth:`to_dict` with the same encoders (no refit)."""
        try:
            self = cls.__new__(cls)
            self.rules = EligibilityRules.from_dict(data["rules"])
            self.pair_all = bool(data["pair_all"])
            self.materialized = bool(data.get("materialize", True))
            self.deal_features = tuple(spec_from_dict(f) for f in data["deal_features"])
            self.course_features = tuple(spec_from_dict(f) for f in data["course_features"])
            self._init_storage(
                FittedBlock.from_dict(data["deal_block"]),
                FittedBlock.from_dict(data["course_block"]),
            )
            self.add_deals(pd.DataFrame(data["deals"]), _pair=False)
            self.add_courses(pd.DataFrame(data["courses"]), _pair=False)
            self._deals.set_active(data["deal_active"])
            self._courses.set_active(data["course_active"])
            deal_index, course_index = self._deals.index, self._courses.index
            pairs = [
                (str(b), deal_index[str(d)], course_index[str(c)]) for b, d, c, _ in data["bundles"]
            ]
            self._bundles.add(pairs)
            self._bundles.set_retired([retired for _, _, _, retired in data["bundles"]])
            self._touch()
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, ValidationError | ConfigError | NotFoundError):
                raise
            raise ValidationError(
                f"malformed catalog state: {type(exc).__name__}: {exc}", field="catalog"
            ) from None
        return self
