"""Per-grid lookups of the factored policies, kept current by patches instead of rebuilt.

A grid (one city's eligible deals x courses) comes back decision after decision with the same id
tuples; what changes between two decisions is one deal, course and bundle effect. So each grid
seen recently keeps its slot arrays (grid position -> the policy's effect slot) and a dense copy of
its pairs' bundle effects (mean and variance, allocated once a bundle of the grid has been
learned), and every learned update patches the entries of the grids that hold it: O(grids) per
update instead of O(deals + courses) dictionary lookups per decision.

Memory: ``2 x 8 x n_deals x n_courses`` bytes per grid with learned bundles (3.2 MB for 1,000 x
200), at most ``capacity`` grids (least recently used dropped).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ._arrays import FloatArray, IntArray

__all__ = ["GridCache", "PreparedGrid"]


class PreparedGrid:
    """What a factored policy needs about one grid beyond its feature rows."""

    __slots__ = (
        "bundle_mean",
        "bundle_var",
        "course_ids",
        "course_pos",
        "cslots",
        "deal_ids",
        "deal_pos",
        "dslots",
        "prior_var",
    )

    def __init__(
        self,
        deal_ids: tuple[str, ...],
        course_ids: tuple[str, ...],
        dslots: IntArray,
        cslots: IntArray,
        prior_var: float,
    ) -> None:
        self.deal_ids = deal_ids
        self.course_ids = course_ids
        self.dslots = dslots
        self.cslots = cslots
        self.deal_pos = {d: i for i, d in enumerate(deal_ids)}
        self.course_pos = {c: j for j, c in enumerate(course_ids)}
        self.prior_var = prior_var
        self.bundle_mean: FloatArray | None = None
        self.bundle_var: FloatArray | None = None

    def set_bundle(self, i: int, j: int, mean: float, var: float) -> None:
        if self.bundle_mean is None or self.bundle_var is None:
            shape = (len(self.deal_ids), len(self.course_ids))
            self.bundle_mean = np.zeros(shape)
            self.bundle_var = np.full(shape, self.prior_var)
        self.bundle_mean[i, j] = mean
        self.bundle_var[i, j] = var

    def bundle_terms(self, deals: IntArray, with_var: bool) -> tuple[FloatArray, FloatArray]:
        """Bundle-effect means and variances of these grid deals' pairs (zeros / the prior for
        pairs never learned)."""
        if self.bundle_mean is None or self.bundle_var is None:
            shape = (deals.shape[0], len(self.course_ids))
            return np.zeros(shape), (np.full(shape, self.prior_var) if with_var else np.empty(0))
        return self.bundle_mean[deals], (self.bundle_var[deals] if with_var else np.empty(0))


class GridCache:
    """The recently used :class:`PreparedGrid` objects, keyed by their id tuples' identity."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._grids: OrderedDict[tuple[int, int], PreparedGrid] = OrderedDict()

    def get(self, deal_ids: tuple[str, ...], course_ids: tuple[str, ...]) -> PreparedGrid | None:
        key = (id(deal_ids), id(course_ids))
        g = self._grids.get(key)
        if g is None or g.deal_ids is not deal_ids or g.course_ids is not course_ids:
            return None
        self._grids.move_to_end(key)
        return g

    def put(self, grid: PreparedGrid) -> None:
        self._grids[(id(grid.deal_ids), id(grid.course_ids))] = grid
        while len(self._grids) > self.capacity:
            self._grids.popitem(last=False)

    def clear(self) -> None:
        self._grids.clear()

    def new_deal(self, deal_id: str, slot: int) -> None:
        for g in self._grids.values():
            i = g.deal_pos.get(deal_id)
            if i is not None:
                g.dslots[i] = slot

    def new_course(self, course_id: str, slot: int) -> None:
        for g in self._grids.values():
            j = g.course_pos.get(course_id)
            if j is not None:
                g.cslots[j] = slot

    def bundle(self, deal_id: str, course_id: str, mean: float, var: float) -> None:
        for g in self._grids.values():
            i = g.deal_pos.get(deal_id)
            if i is None:
                continue
            j = g.course_pos.get(course_id)
            if j is not None:
                g.set_bundle(i, j, mean, var)
