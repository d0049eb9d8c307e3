"""Row-level problems of a log, collected so that one error reports all of them.

Row numbers are 1-based data row numbers (row 1 is the first row after the header); each problem is
reported with its count and the first few rows
(:func:`~bandit_engine.evaluation._validate.preview_rows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import ValidationError
from .._validate import preview_rows

__all__ = ["Problems"]


class Problems:
    """Collects validation problems so one error reports all of them."""

    def __init__(self, source: str, n_rows: int) -> None:
        self.source = source
        self.n_rows = n_rows
        self.items: list[tuple[str, str, list[int]]] = []

    def add(
        self, field: str, requirement: str, mask: NDArray[np.bool_], values: Any = None
    ) -> None:
        if not mask.any():
            return
        rows = np.flatnonzero(mask)
        shown = None if values is None else np.asarray(values)[rows]
        text = preview_rows(rows, shown, total=self.n_rows, one_based=True)
        self.items.append((field, f"{field} {requirement}: {text}", (rows[:5] + 1).tolist()))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        field, _, rows = self.items[0]
        detail = "; ".join(message for _, message, _ in self.items)
        raise ValidationError(
            f"{self.source}: {len(self.items)} problem(s): {detail}", field=field, value=rows
        )
