"""Eligible deals x eligible courses: the candidate set of one decision as a grid.

In a pair-all catalog every active deal pairs with every active course, so the eligible bundles of
one decision are exactly (eligible deals) x (active courses): two short lists instead of
``n_deals x n_courses`` rows. A catalog with an explicit bundle list is a grid with holes: the
deals and courses of its eligible bundles, and a mask of the pairs that are bundles (with their
bundle rows). :class:`GridCandidates` holds them (ids, catalog rows, mask);
:class:`GridEligibility` caches one per city key like :class:`~.eligibility.Eligibility` does for
listed candidate sets (same rules, same validity interval), and returns the *same* id tuples
while nothing changed, so a grid policy can recognise a grid it has prepared before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .bundles import BundleIndex
from .eligibility import AnyCity, EligibilityRules, deal_mask
from .tables import DealTable, ItemTable

__all__ = ["GridCandidates", "GridEligibility"]

IntArray = NDArray[np.intp]


@dataclass(frozen=True, eq=False)
class GridCandidates:
    """The eligible deals and courses of one decision.

    ``allowed`` is ``None`` when every pair is a candidate (pair-all catalogs without retired
    bundles); otherwise a ``(n_deals, n_courses)`` mask of the pairs that are eligible bundles, and
    ``bundle_rows`` their catalog rows (-1 elsewhere)."""

    deal_ids: tuple[str, ...]
    course_ids: tuple[str, ...]
    deal_rows: IntArray
    course_rows: IntArray
    allowed: NDArray[np.bool_] | None = None
    bundle_rows: IntArray | None = None

    @property
    def size(self) -> int:
        """Number of candidate pairs."""
        if self.allowed is not None:
            return int(np.count_nonzero(self.allowed))
        return len(self.deal_ids) * len(self.course_ids)


class GridEligibility:
    """Per-city cache of :class:`GridCandidates` (cleared by the catalog on every change)."""

    max_entries = 4096

    def __init__(
        self,
        rules: EligibilityRules,
        deals: DealTable,
        courses: ItemTable,
        bundles: BundleIndex | None = None,
    ) -> None:
        self.rules = rules
        self.deals = deals
        self.courses = courses
        self.bundles = bundles  # None: unlisted pair-all catalog
        self._cache: dict[str | AnyCity | None, tuple[int, float, float, GridCandidates]] = {}

    def clear(self) -> None:
        self._cache.clear()

    def eligible(self, city: str | AnyCity | None, now: float, version: int) -> GridCandidates:
        cached = self._cache.get(city)
        if cached is not None and cached[0] == version and cached[1] <= now < cached[2]:
            return cached[3]
        mask, lo, hi = deal_mask(self.rules, self.deals, city, now)
        allowed = bundle_rows = None
        if self.bundles is None:
            deal_rows = np.flatnonzero(mask).astype(np.intp)
            course_rows = np.flatnonzero(self.courses.active).astype(np.intp)
        else:
            rows = self.bundles.select(mask, self.courses.active)
            d_of, c_of = self.bundles.part_rows(rows)
            deal_rows = np.unique(d_of).astype(np.intp)
            course_rows = np.unique(c_of).astype(np.intp)
            i = np.searchsorted(deal_rows, d_of)
            j = np.searchsorted(course_rows, c_of)
            bundle_rows = np.full((deal_rows.size, course_rows.size), -1, dtype=np.intp)
            bundle_rows[i, j] = rows
            allowed = bundle_rows >= 0
            if rows.size and int(np.count_nonzero(allowed)) != rows.size:
                raise ConfigError.for_field(
                    "catalog",
                    "two bundles of one (deal, course) pair",
                    "cannot be told apart by a grid policy: give each pair one bundle",
                )
            if rows.size == deal_rows.size * course_rows.size:
                allowed = None  # every pair is a bundle: no mask needed
            allowed_ro = allowed
            if allowed_ro is not None:
                allowed_ro.setflags(write=False)
            bundle_rows.setflags(write=False)
        deal_ids, course_ids = self.deals.ids, self.courses.ids
        grid = GridCandidates(
            tuple([deal_ids[i] for i in deal_rows.tolist()]),
            tuple([course_ids[j] for j in course_rows.tolist()]),
            deal_rows,
            course_rows,
            allowed,
            bundle_rows,
        )
        deal_rows.setflags(write=False)
        course_rows.setflags(write=False)
        if len(self._cache) > self.max_entries:
            self._cache.clear()
        self._cache[city] = (version, lo, hi, grid)
        return grid
