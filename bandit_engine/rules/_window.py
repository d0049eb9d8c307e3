"""Speed machinery for :class:`~bandit_engine.rules.state.MemoryRuleState`: one user's shows
with the frequency caps' counts kept incrementally (:class:`UserShows`).

The algorithm is the recount in :meth:`RuleRunner._blocked
<bandit_engine.rules.runtime.RuleRunner._blocked>`: cap ``j`` (scope ``s``, window ``w``, at most
``m`` shows) blocks every item of scope ``s`` shown ``m`` times or more at ``ts > now - w`` among
the user's kept shows. This class gives the same answer without the recount. Its shows are kept
in the order they were recorded and pruned exactly as the plain list was (on a record, when the
oldest is at or before ``forget_before``); each cap keeps the index of its first show still in
its window, the counts of the shows from there on and the items at or over its limit. A read at
``now`` moves each cap's index past the shows its window has lost (expiry from the left, done
lazily and exactly).

That is exact while the user's times never go backwards (the shows are then sorted and every
show left of a cap's index is out of its window for good). A read earlier than the user's latest
time returns ``None`` (the caller recounts); a record earlier than it turns the counts off for
this user until the shows are pruned to nothing (the caller recounts meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

__all__ = ["CapSpec", "UserShows"]

#: one frequency cap as the counts need it: ``(scope, window in seconds, max_shows)``
CapSpec = tuple[str, float, int]


_CAPS_OF: dict[tuple[CapSpec, ...], dict[str, tuple[tuple[int, int], ...]]] = {}


def _caps_of(caps: Sequence[CapSpec]) -> dict[str, tuple[tuple[int, int], ...]]:
    """Per scope, ``(cap index, max_shows)`` of its caps (worked out once per caps spec)."""
    key = tuple(caps)
    out = _CAPS_OF.get(key)
    if out is None:
        lists: dict[str, list[tuple[int, int]]] = {}
        for j, (scope, _, limit) in enumerate(caps):
            lists.setdefault(scope, []).append((j, limit))
        out = _CAPS_OF[key] = {scope: tuple(v) for scope, v in lists.items()}
    return out


class UserShows:
    """One user's kept shows ``(scope, item, ts)`` and, per cap, the incremental counts (see the
    module docstring)."""

    __slots__ = ("caps", "caps_of", "clock", "counted", "counts", "over", "rows", "starts")

    def __init__(self, caps: Sequence[CapSpec]) -> None:
        self.caps = caps
        #: per scope, ``(cap index, max_shows)`` of its caps (shared by every user)
        self.caps_of = _caps_of(caps)
        #: the shows, oldest first, as the plain list kept them
        self.rows: list[tuple[str, str, float]] = []
        #: whether the counts below are valid (times never went backwards since the last reset)
        self.counted = True
        #: the latest time recorded or read
        self.clock = -float("inf")
        #: per cap: index into ``rows`` of its first show not yet out of its window
        self.starts = [0] * len(caps)
        #: per cap: item -> shows of its scope from ``starts[j]`` on
        self.counts: list[dict[str, int]] = [{} for _ in caps]
        #: per cap: the items at or over its limit (a read returns these, not copies)
        self.over: list[set[str]] = [set() for _ in caps]

    def _reset(self) -> None:
        self.counted = True
        self.starts = [0] * len(self.caps)
        self.counts = [{} for _ in self.caps]
        self.over = [set() for _ in self.caps]

    def replay(self, rows: Sequence[tuple[str, str, float]]) -> None:
        """Take over ``rows`` (another structure's shows, kept as they were) and count them."""
        self.rows = list(rows)
        self._reset()
        times = [r[2] for r in self.rows]
        self.clock = max(times, default=-float("inf"))
        if any(b < a for a, b in pairwise(times)):
            self.counted = False
            return
        caps_of = self.caps_of
        for scope, item, _ in self.rows:
            for j, limit in caps_of.get(scope, ()):
                counts = self.counts[j]
                n = counts[item] = counts.get(item, 0) + 1
                if n >= limit:
                    self.over[j].add(item)

    def _drop(self, j: int, item: str) -> None:
        counts = self.counts[j]
        n = counts[item] - 1
        if n:
            counts[item] = n
        else:
            del counts[item]
        if n < self.caps[j][2]:
            self.over[j].discard(item)

    def record(self, shows: Sequence[tuple[str, str]], now: float, forget_before: float) -> None:
        """Append ``shows`` at ``now`` after pruning the shows at or before ``forget_before``
        (only when the oldest is: the plain list's rule)."""
        rows = self.rows
        if rows and rows[0][2] <= forget_before:
            if self.counted:
                k = 0  # sorted: the pruned shows are a prefix
                while k < len(rows) and rows[k][2] <= forget_before:
                    k += 1
                for j, (scope, _, _) in enumerate(self.caps):
                    start = self.starts[j]
                    for i in range(start, k):  # pruned before this cap's window lost them
                        if rows[i][0] == scope:
                            self._drop(j, rows[i][1])
                    self.starts[j] = max(start, k) - k
                del rows[:k]
            else:
                rows[:] = [r for r in rows if r[2] > forget_before]
                if not rows:
                    self._reset()
        if now < self.clock:
            self.counted = False
        else:
            self.clock = now
        if not self.counted:
            rows.extend((scope, item, now) for scope, item in shows)
            return
        caps_of = self.caps_of
        for scope, item in shows:
            rows.append((scope, item, now))
            for j, limit in caps_of.get(scope, ()):
                counts = self.counts[j]
                n = counts[item] = counts.get(item, 0) + 1
                if n >= limit:
                    self.over[j].add(item)

    def read(self, now: float) -> list[set[str]] | None:
        """Per cap, the items it blocks at ``now``; ``None`` when the counts cannot answer (a
        time earlier than the user's latest, or counts turned off): recount from :attr:`rows`."""
        if not self.counted or now < self.clock:
            return None
        self.clock = now
        rows = self.rows
        end = len(rows)
        for j, (scope, window, _) in enumerate(self.caps):
            i = self.starts[j]
            cut = now - window
            if i < end and rows[i][2] <= cut:
                while i < end and rows[i][2] <= cut:
                    if rows[i][0] == scope:
                        self._drop(j, rows[i][1])
                    i += 1
                self.starts[j] = i
        return self.over
