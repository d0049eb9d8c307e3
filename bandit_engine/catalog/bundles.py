"""The bundle index: bundle ids -> (deal row, course row), feature vectors and retired flags.

Every question asked of bundles goes through :class:`BundleIndex`: which rows exist, which deal and
course a row pairs, its feature vector ``z = [1, deal block, course block]``, and which rows
survive a deal-level and course-level eligibility mask (:meth:`BundleIndex.select`). Nothing else
indexes the bundle columns, so a different representation (for instance all-pairs bundles computed
on demand instead of materialised) changes this module only.

Today the index is materialised: one row per bundle ever added, in insertion order, held as a few
columnar arrays (``deal``, ``course``, ``retired``, ``z``) plus the id list and its id -> row dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import NotFoundError, ValidationError
from .tables import BoolArray, DealTable, FloatArray, ItemTable

__all__ = ["BundleIndex", "CandidateSet", "Pair"]

IntArray = NDArray[np.intp]
Pair = tuple[str, int, int]

#: Listed bundles a catalog holds at most: a listed row costs about 0.5 KB (id, index entry,
#: feature row), so 2,000,000 rows are about 1 GB before any model. Larger all-pairs catalogs
#: are unlisted (``Catalog(..., materialize=False)``).
MAX_LISTED_BUNDLES = 2_000_000
"""``(bundle_id, deal row, course row)``."""


@dataclass(frozen=True, eq=False)
class CandidateSet:
    """Eligible bundles for one decision: ids, catalog rows and feature rows (aligned)."""

    ids: tuple[str, ...]
    rows: NDArray[np.intp]
    features: FloatArray


class BundleIndex:
    """Bundles of a catalog: (deal, course) pairs over a :class:`DealTable` and an
    :class:`ItemTable` of courses.

    Rows are never removed: retiring sets a flag, so a row keeps its id and features and the
    decisions pending on it learn normally. A bundle is *active* when it is not retired and
    both its deal and its course are active.
    """

    def __init__(self, deals: DealTable, courses: ItemTable) -> None:
        self.deals = deals
        self.courses = courses
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._deal: IntArray = np.zeros(0, dtype=np.intp)
        self._course: IntArray = np.zeros(0, dtype=np.intp)
        self._retired: BoolArray = np.zeros(0, dtype=bool)
        self._z: FloatArray = np.empty((0, 1 + deals.block.width + courses.block.width))

    # -- ids and rows ----------------------------------------------------------------------------
    @property
    def ids(self) -> tuple[str, ...]:
        """Every bundle id ever added, retired ones included, in row order."""
        return tuple(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, bundle_id: object) -> bool:
        return bundle_id in self._index

    @property
    def row_of(self) -> Mapping[str, int]:
        """Bundle id -> row, read-only (ids are not converted to str). A mapping rather than a
        method so that a per-id loop (the availability mask) costs one dict lookup per id."""
        return self._index

    def row(self, bundle_id: str) -> int:
        """The row of ``bundle_id``; :class:`NotFoundError` if unknown."""
        row = self._index.get(str(bundle_id))
        if row is None:
            raise NotFoundError.for_field("bundle_id", bundle_id, "is not in the catalog")
        return row

    def parts(self, row: int) -> tuple[int, int]:
        """``(deal row, course row)`` of a bundle row."""
        # .item() rather than int(a[row]): twice as fast (no numpy scalar in between).
        return self._deal.item(row), self._course.item(row)

    def part_rows(self, rows: Sequence[int] | IntArray) -> tuple[IntArray, IntArray]:
        """``(deal rows, course rows)`` of the given bundle rows (copies)."""
        return self._deal[rows], self._course[rows]

    def part_ids(self, bundle_id: str) -> tuple[str, str]:
        """``(deal_id, course_id)`` of a bundle; :class:`NotFoundError` if unknown."""
        # Engine.decide asks this once per decision: one call, no intermediate tuple.
        row = self._index.get(str(bundle_id))
        if row is None:
            raise NotFoundError.for_field("bundle_id", bundle_id, "is not in the catalog")
        return self.deals.ids[self._deal.item(row)], self.courses.ids[self._course.item(row)]

    def features(self, rows: Sequence[int] | IntArray) -> FloatArray:
        """Feature rows ``z`` of the given bundle rows, shape ``(len(rows), width)`` (a copy)."""
        return self._z[rows]

    def active(self, row: int) -> bool:
        """Whether a bundle row is offered: not retired, its deal and course active."""
        d, c = self.parts(row)
        return (
            not bool(self._retired[row])
            and bool(self.deals.active[d])
            and bool(self.courses.active[c])
        )

    # -- adding, retiring ------------------------------------------------------------------------
    def add(self, pairs: Sequence[Pair]) -> list[str]:
        """Add bundles; a known id re-activates (un-retires) its bundle.

        Raises :class:`ValidationError`, before anything changes, if a known id names a
        different (deal, course) pair or the index would exceed :data:`MAX_LISTED_BUNDLES`.
        Returns the ids that were new.
        """
        known = len(self._ids)
        self.check_room(len(pairs))
        new: dict[str, int] = {}
        new_deal: list[int] = []
        new_course: list[int] = []
        revived: list[int] = []
        for name, d, c in pairs:
            row = self._index.get(name)
            if row is None:
                row = new.get(name)
            if row is not None:
                pair = (
                    self.parts(row)
                    if row < known
                    else (new_deal[row - known], new_course[row - known])
                )
                if pair != (d, c):
                    raise ValidationError.for_field(
                        "bundles.bundle_id", name, "already names a different (deal, course) pair"
                    )
                if row < known:
                    revived.append(row)
                continue
            new[name] = known + len(new_deal)
            new_deal.append(d)
            new_course.append(c)
        self._retired[revived] = False
        if new:
            deal = np.asarray(new_deal, dtype=np.intp)
            course = np.asarray(new_course, dtype=np.intp)
            self._ids.extend(new)
            self._index.update(new)
            self._deal = np.concatenate([self._deal, deal])
            self._course = np.concatenate([self._course, course])
            self._retired = np.concatenate([self._retired, np.zeros(len(new), dtype=bool)])
            self._z = np.vstack([self._z, self._compose(deal, course)])
        return list(new)

    def check_room(self, n_new: int) -> None:
        """:class:`ValidationError` if ``n_new`` more rows would exceed :data:`MAX_LISTED_BUNDLES`
        (callers check before changing anything)."""
        known = len(self._ids)
        if known + n_new > MAX_LISTED_BUNDLES:
            raise ValidationError.for_field(
                "bundles",
                f"{known:,} listed + {n_new:,} new",
                f"must list at most {MAX_LISTED_BUNDLES:,} bundles: pair every deal with every "
                "course without listing them (Catalog(deals, courses, materialize=False))",
            )

    def pair(self, deal_rows: Iterable[int], course_rows: Iterable[int]) -> list[str]:
        """Add the bundle ``"<deal_id>+<course_id>"`` of every given deal and course not yet
        paired (all-pairs mode). Returns the new ids."""
        course_rows = list(course_rows)
        deal_ids, course_ids = self.deals.ids, self.courses.ids
        pairs = [(f"{deal_ids[d]}+{course_ids[c]}", d, c) for d in deal_rows for c in course_rows]
        return self.add([p for p in pairs if p[0] not in self._index])

    def retire(self, bundle_ids: Iterable[str]) -> None:
        """Retire these bundles (all looked up before any is changed)."""
        rows = [self.row(b) for b in bundle_ids]
        self._retired[rows] = True

    def id_at(self, row: int) -> str:
        """The id of bundle row ``row``."""
        return self._ids[row]

    def set_retired(self, flags: Sequence[Any]) -> None:
        """Restore saved retired flags (one per row, from the start)."""
        for row, flag in enumerate(flags):
            self._retired[row] = bool(flag)

    def refresh(self, deal_rows: Sequence[int] = (), course_rows: Sequence[int] = ()) -> None:
        """Recompute ``z`` of the bundles of these deals or courses (their features changed)."""
        if not len(deal_rows) and not len(course_rows):
            return
        hit = np.isin(self._deal, deal_rows) | np.isin(self._course, course_rows)
        rows = np.flatnonzero(hit)
        if rows.size:
            self._z[rows] = self._compose(self._deal[rows], self._course[rows])

    def _compose(self, deal: IntArray, course: IntArray) -> FloatArray:
        """``[1, deal z, course z]`` for each (deal, course) row pair."""
        return np.hstack([np.ones((len(deal), 1)), self.deals.z[deal], self.courses.z[course]])

    # -- eligibility -----------------------------------------------------------------------------
    def select(self, deal_ok: BoolArray, course_ok: BoolArray) -> IntArray:
        """Rows of the bundles that are not retired and whose deal and course pass the masks
        (one flag per deal row and per course row), in row order."""
        mask = ~self._retired
        if mask.size:
            mask &= deal_ok[self._deal]
            mask &= course_ok[self._course]
        return np.flatnonzero(mask).astype(np.intp)

    def candidate_set(self, rows: IntArray) -> CandidateSet:
        """The :class:`CandidateSet` of these rows."""
        ids = self._ids
        return CandidateSet(tuple([ids[i] for i in rows.tolist()]), rows, self._z[rows])

    # -- tables out ------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """One row per bundle: ``bundle_id``, ``deal_id``, ``course_id``, ``active``."""
        deal_ids, course_ids = self.deals.ids, self.courses.ids
        active = self.select(self.deals.active, self.courses.active)
        flags = np.zeros(len(self._ids), dtype=bool)
        flags[active] = True
        return pd.DataFrame(
            {
                "bundle_id": list(self._ids),
                "deal_id": [deal_ids[d] for d in self._deal.tolist()],
                "course_id": [course_ids[c] for c in self._course.tolist()],
                "active": flags.tolist(),
            }
        )

    def to_list(self) -> list[list[Any]]:
        """``[bundle_id, deal_id, course_id, retired]`` per row (the saved state)."""
        deal_ids, course_ids = self.deals.ids, self.courses.ids
        return [
            [b, deal_ids[d], course_ids[c], r]
            for b, d, c, r in zip(
                self._ids,
                self._deal.tolist(),
                self._course.tolist(),
                self._retired.tolist(),
                strict=True,
            )
        ]
