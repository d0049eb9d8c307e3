"""The deal side, the course side and the pairing cell of pair rows, for grid policies.

A grid policy (:mod:`bandit_engine.policies.factored`) never sees a row per pair: it scores pair
``(d, c)`` from the deal's row, the course's row and the cell ``(deal_cell[d], course_cell[c])``.
:class:`GridFeatures` builds them from the context ``x`` and the catalog's encoded deal and course
features, reusing the pair-feature rules of :mod:`.pairs` on each side separately:

* deal side: the deal's encoded features, then its profile-match flags (``groupbuy.cuisines`` lists
  the deal's cuisine) and numeric profile x deal crosses (price sensitivity x discount);
* course side: the same for the course;
* cells: the labels of one categorical deal field and one categorical course field (default
  ``deal.cuisine`` x ``course.topic``; a part whose label is unknown or other falls in an extra
  last cell), the "wine course with a western dinner" table.

What a pair row has and these sides cannot: products of a deal column with a course column other
than the cell (for example the combined price of the pair), and the per-bundle behaviour features
(this user clicked this bundle); a grid policy's per-bundle effect carries the bundle's own part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from .pairs import PairFeatures, one_hot_columns

__all__ = ["GridFeatures", "SideRows"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


class SideRows:
    """One side's encoded rows with the columns its pair features read, gathered once (they do
    not depend on the user): a grid that comes back decision after decision reuses them."""

    __slots__ = ("Z", "match", "num")

    def __init__(self, pairs: PairFeatures, Z: FloatArray) -> None:
        self.Z = Z
        self.match = [Z[:, iz] for _, _, iz in pairs.match_blocks]
        self.num = Z[:, pairs.z_num] if pairs.x_num.size and pairs.z_num.size else None


class GridFeatures:
    """Index plan for the two sides of a grid's pair rows.

    Parameters
    ----------
    x_names
        Names of the context columns.
    deal_names, course_names
        Names of the encoded deal and course columns (``deal.cuisine=hotpot``, ``course.price``).
    cells
        ``(deal field, course field)`` of the pairing table, two categorical fields.
    match, crosses
        Profile-match flags and numeric crosses on each side (as :class:`~.pairs.PairFeatures`).
    """

    def __init__(
        self,
        x_names: Sequence[str],
        deal_names: Sequence[str],
        course_names: Sequence[str],
        *,
        cells: tuple[str, str] = ("deal.cuisine", "course.topic"),
        match: bool = True,
        crosses: bool = True,
    ) -> None:
        self.cells = cells
        self.deal_pairs = PairFeatures(x_names, deal_names, match=match, crosses=crosses)
        self.course_pairs = PairFeatures(x_names, course_names, match=match, crosses=crosses)
        self.deal_cell_cols = one_hot_columns(deal_names, cells[0])
        self.course_cell_cols = one_hot_columns(course_names, cells[1])
        for field, cols in ((cells[0], self.deal_cell_cols), (cells[1], self.course_cell_cols)):
            if cols.size == 0:
                raise ConfigError.for_field(
                    "cells",
                    field,
                    "must name a categorical deal field and a categorical course "
                    "field of the catalog (e.g. 'deal.cuisine', 'course.topic')",
                )
        self.n_deal_cells = int(self.deal_cell_cols.size) + 1
        self.n_course_cells = int(self.course_cell_cols.size) + 1
        self.deal_width = len(deal_names) + self.deal_pairs.width
        self.course_width = len(course_names) + self.course_pairs.width

    def deal_rows(self, Zd: FloatArray) -> SideRows:
        """The user-independent part of the deal sides of these encoded deals (cache it)."""
        return SideRows(self.deal_pairs, Zd)

    def course_rows(self, Zc: FloatArray) -> SideRows:
        return SideRows(self.course_pairs, Zc)

    def deal_side(self, x: FloatArray, Zd: FloatArray | SideRows) -> FloatArray:
        """Deal-side rows ``[z_d, match flags, crosses]`` for context ``x``: ``(n, deal_width)``."""
        rows = Zd if isinstance(Zd, SideRows) else self.deal_rows(Zd)
        return _side(self.deal_pairs, x, rows)

    def course_side(self, x: FloatArray, Zc: FloatArray | SideRows) -> FloatArray:
        """Course-side rows for context ``x``: ``(n, course_width)``."""
        rows = Zc if isinstance(Zc, SideRows) else self.course_rows(Zc)
        return _side(self.course_pairs, x, rows)

    def deal_cells(self, Zd: FloatArray) -> IntArray:
        """Each deal's cell row (the label of the deal field; the last for unknown / other)."""
        return _cells(Zd, self.deal_cell_cols)

    def course_cells(self, Zc: FloatArray) -> IntArray:
        return _cells(Zc, self.course_cell_cols)


def _side(pairs: PairFeatures, x: FloatArray, rows: SideRows) -> FloatArray:
    """``[Z, match flags, numeric crosses]``: the same columns as ``PairFeatures.compute_dynamic``
    (grid sides have no known-crosses), from the pre-gathered columns."""
    Z = rows.Z
    n, wz = Z.shape
    out = np.empty((n, wz + pairs.width))
    out[:, :wz] = Z
    c = wz
    for (_, ix, _), m in zip(pairs.match_blocks, rows.match, strict=True):
        out[:, c] = m @ x[ix]
        c += 1
    if rows.num is not None:
        xs = x[pairs.x_num]
        w = rows.num.shape[1] * xs.shape[0]
        out[:, c : c + w] = (rows.num[:, :, None] * xs[None, None, :]).reshape(n, w)
        c += w
    if c != out.shape[1]:  # pragma: no cover - the plan and PairFeatures.width disagree
        raise AssertionError("grid side width mismatch")
    return out


def _cells(Z: FloatArray, cols: IntArray) -> IntArray:
    hot = Z[:, cols]
    out: IntArray = np.argmax(hot, axis=1).astype(np.intp)
    out[hot.max(axis=1) <= 0.0] = cols.size  # no label among the known ones: the extra cell
    return out
