"""Arm bookkeeping: string ids to rows of a policy's stacked per-arm arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ._arrays import IntArray

__all__ = ["ArmTable"]

_NO_ROWS: IntArray = np.empty(0, dtype=np.intp)
_NO_ROWS.setflags(write=False)


class ArmTable:
    """Maps arm ids to rows of a policy's stacked per-arm arrays.

    Recent candidate tuples are cached by identity (tuples are immutable), so an engine that
    passes the same tuple of bundle ids for each city pays no dictionary look-ups: up to
    :attr:`RECENT` tuples, the oldest dropped first. The last candidate list is also compared
    by value, so an equal list passed again costs one comparison.
    """

    #: How many candidate tuples :meth:`rows` remembers.
    RECENT = 64

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        # id(tuple) -> (the tuple itself, keeping its id from being reused; rows; contiguous)
        self._recent: dict[int, tuple[tuple[str, ...], IntArray, bool]] = {}
        self._last: tuple[tuple[str, ...], IntArray, bool] = ((), _NO_ROWS, False)

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def _check_unique(arms: Sequence[str]) -> None:
        if len(set(arms)) != len(arms):
            seen: set[str] = set()
            for arm in arms:
                if arm in seen:
                    raise ValidationError.for_field("arms", arm, "must not contain duplicates")
                seen.add(arm)

    def _new(self, arm: str) -> int:
        if not isinstance(arm, str):
            raise ValidationError.for_field("arm", arm, "must be a string id")
        row = len(self.ids)
        self.index[arm] = row
        self.ids.append(arm)
        return row

    def rows(self, arms: Sequence[str]) -> tuple[IntArray, bool, int]:
        """Row numbers of ``arms`` (new arms appended). Returns ``(rows, contiguous, n_new)``;
        ``contiguous`` means ``rows == arange(len(arms))`` so callers may slice instead of
        gather. The returned array is read-only and may be shared with the cache.

        Recent tuples are remembered by identity: the same tuple object costs one dictionary
        look-up (rows of existing ids never change); a list or tuple equal to the last one, one
        comparison; anything else is looked up arm by arm.
        """
        hit = self._recent.get(id(arms))
        if hit is not None and hit[0] is arms:
            return hit[1], hit[2], 0
        try:
            key = arms if type(arms) is tuple else tuple(arms)
            last = self._last
            if key == last[0]:  # an equal list or tuple: one comparison
                return last[1], last[2], 0
            self._check_unique(key)
            get = self.index.get
            found = [get(arm) for arm in key]
        except TypeError:  # unhashable id
            raise ValidationError.for_field("arms", list(arms), "must be string ids") from None
        n_before = len(self.ids)
        if n_before == 0 or None in found:
            found = [
                self._new(arm) if row is None else row for arm, row in zip(key, found, strict=True)
            ]
        out = np.array(found, dtype=np.intp)
        out.setflags(write=False)
        k = out.shape[0]
        contiguous = bool(k > 0 and found[0] == 0 and found[-1] == k - 1)
        if contiguous:
            contiguous = bool(np.array_equal(out, np.arange(k)))
        self._last = (key, out, contiguous)
        if key is arms:  # only the caller's own tuple can recur by identity
            recent = self._recent
            if len(recent) >= self.RECENT:
                del recent[next(iter(recent))]  # the oldest entry goes first
            recent[id(key)] = self._last
        return out, contiguous, len(self.ids) - n_before

    def lookup(self, arms: Sequence[str], missing: int) -> IntArray:
        """Rows of ``arms`` without creating anything; unknown ids get row ``missing``
        (policies point it at an untouched prior row)."""
        for a in arms:
            if not isinstance(a, str):
                raise ValidationError.for_field("arm", a, "must be a string id")
        self._check_unique(arms)
        index = self.index
        return np.fromiter((index.get(a, missing) for a in arms), dtype=np.intp, count=len(arms))

    def row(self, arm: str) -> tuple[int, bool]:
        """Row of one arm, creating it if needed. Returns ``(row, created)``."""
        try:
            row = self.index.get(arm)
        except TypeError:
            raise ValidationError.for_field("arm", arm, "must be a string id") from None
        if row is not None:
            return row, False
        return self._new(arm), True

    def clear_cache(self) -> None:
        self._recent.clear()
        self._last = ((), _NO_ROWS, False)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ArmTable:
        """The table saved under ``state["arms"]`` by a policy's ``get_state`` (a
        ValidationError naming ``state.arms`` otherwise)."""
        arms = state.get("arms")
        if not isinstance(arms, list | tuple):
            raise ValidationError.for_field("state.arms", arms, "must be a list of arm ids")
        table = cls()
        table.set_ids(arms)
        return table

    def set_ids(self, ids: Sequence[str]) -> None:
        """Replace the table (used by ``set_state``)."""
        if not all(isinstance(a, str) for a in ids):
            raise ValidationError.for_field("state.arms", list(ids), "must be a list of strings")
        if len(set(ids)) != len(ids):
            raise ValidationError.for_field("state.arms", list(ids), "must not contain duplicates")
        self.ids = list(ids)
        self.index = {a: i for i, a in enumerate(self.ids)}
        self.clear_cache()
