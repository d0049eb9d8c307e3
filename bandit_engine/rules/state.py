"""Where caps, budgets and exclusions keep their counts: the :class:`RuleState` protocol and the
in-memory :class:`MemoryRuleState`.

Per-user rows are keyed by a pseudonym, never the raw id: :meth:`RuleState.user_key`. The
in-memory state keys them by a keyed BLAKE2b of the id under a random per-process secret (it is
never saved, so nothing on disk can be linked to a user); the event log's state
(:class:`~bandit_engine.service.rule_store.LogRuleState`) uses the log's HMAC pseudonym and keeps
the rows in the log's tables, so caps and budgets hold across server processes.

The in-memory state is for one process (the embedding API, the simulator): it is not saved with
the engine file, so a reloaded engine starts with empty counters. It also keeps the caps' counts
per user as the shows come (:meth:`MemoryRuleState.track_caps`, :mod:`._window`), so a decision
reads what its caps block instead of recounting the user's shows; the runner recounts from
:meth:`RuleState.history` for any other state.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._window import CapSpec, UserShows

__all__ = ["History", "MemoryRuleState", "RuleState"]

_KEYS_KEPT = 100_000  # pseudonyms cached per process (cleared when full)


@dataclass(frozen=True)
class History:
    """What a user's caps and exclusions read: shows since a time (``(scope, item, ts)``) and
    orders (``(deal_id, course_id, ts)``, every one kept, newest last)."""

    shows: Sequence[tuple[str, str, float]]
    orders: Sequence[tuple[str, str, float]]


class RuleState(Protocol):
    """Counters behind caps, budgets and exclusions (see the module docstring)."""

    def user_key(self, user_id: str) -> str: ...

    def history(self, key: str, since: float, *, orders: bool) -> History: ...

    def budget_used(self, day: int, at_least: int) -> Mapping[tuple[str, str], int]: ...

    def record_show(
        self,
        key: str | None,
        shows: Sequence[tuple[str, str]],
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
        forget_before: float,
    ) -> None: ...

    def record_order(
        self,
        key: str | None,
        deal_id: str,
        course_id: str,
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
    ) -> None: ...

    def forget(self, key: str) -> int: ...


class MemoryRuleState:
    """The counters in this process's memory (see the module docstring).

    ``max_users`` bounds the per-user rows (least recently shown evicted first); budget counters
    keep the current and the previous day only.
    """

    def __init__(self, *, max_users: int = 1_000_000) -> None:
        self._secret = os.urandom(32)
        self.max_users = max_users
        self._shows: OrderedDict[str, UserShows] = OrderedDict()
        self._orders: dict[str, list[tuple[str, str, float]]] = {}
        self._budgets: dict[int, defaultdict[tuple[str, str], int]] = {}
        self._peak: dict[int, int] = {}  # the largest count of each day (a fast "none near")
        # the caps whose counts the users' shows keep (:meth:`track_caps`)
        self._caps: tuple[CapSpec, ...] = ()
        self._none_blocked: list[set[str]] = []  # what a user without shows is blocked by
        # user id -> pseudonym: the keyed hash costs about a microsecond per decision; held in
        # this process only (like the secret), dropped by :meth:`forget`
        self._keys: dict[str, str] = {}

    def user_key(self, user_id: str) -> str:
        key = self._keys.get(user_id)
        if key is None:
            key = hashlib.blake2b(
                user_id.encode("utf-8"), key=self._secret, digest_size=16
            ).hexdigest()
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            self._keys[user_id] = key
        return key

    def track_caps(self, caps: Sequence[CapSpec]) -> tuple[CapSpec, ...]:
        """Keep the counts of ``caps`` (``(scope, window in seconds, max_shows)`` each) from now
        on, rebuilt from the shows kept so far; returns the spec :meth:`cap_blocked` expects.
        A later call with other caps replaces them (readers of the old ones then recount)."""
        spec = tuple((str(s), float(w), int(m)) for s, w, m in caps)
        if spec == self._caps:
            return self._caps
        self._caps = spec
        self._none_blocked = [set() for _ in spec]
        for key, old in self._shows.items():
            new = self._shows[key] = UserShows(spec)
            new.replay(old.rows)
        return spec

    def cap_blocked(self, key: str, now: float, caps: tuple[CapSpec, ...]) -> list[set[str]] | None:
        """Per cap of ``caps`` (the spec :meth:`track_caps` returned), the items it blocks for
        ``key`` at ``now`` (sets owned by the state: read, never change them); ``None`` when the
        caller must recount from :meth:`history` (other caps, or the user's times went
        backwards)."""
        if caps is not self._caps:
            return None
        rows = self._shows.get(key)
        if rows is None:
            return self._none_blocked
        return rows.read(now)

    def orders_of(self, key: str) -> Sequence[tuple[str, str, float]]:
        """The user's orders (``(deal_id, course_id, ts)``, newest last), as :meth:`history`
        gives them."""
        return self._orders.get(key, ())

    def history(self, key: str, since: float, *, orders: bool) -> History:
        entry = self._shows.get(key)
        shows = entry.rows if entry is not None else ()
        recent = [s for s in shows if s[2] > since] if shows else []
        return History(recent, self._orders.get(key, []) if orders else [])

    def budget_used(self, day: int, at_least: int) -> Mapping[tuple[str, str], int]:
        """Counts of ``day`` that are at least ``at_least``."""
        if self._peak.get(day, 0) < at_least:
            return {}
        return {k: n for k, n in self._budgets[day].items() if n >= at_least}

    def _count(self, day: int, units: Sequence[tuple[str, str]]) -> None:
        if not units:
            return
        counts = self._budgets.get(day)
        if counts is None:
            for old in [d for d in self._budgets if d < day - 1]:
                del self._budgets[old]
                self._peak.pop(old, None)
            counts = self._budgets[day] = defaultdict(int)
        peak = self._peak.get(day, 0)
        for unit in units:
            n = counts[unit] = counts[unit] + 1
            peak = max(peak, n)
        self._peak[day] = peak

    def record_show(
        self,
        key: str | None,
        shows: Sequence[tuple[str, str]],
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
        forget_before: float,
    ) -> None:
        if key is not None and shows:
            rows = self._shows.get(key)
            if rows is None:
                if len(self._shows) >= self.max_users:
                    self._shows.popitem(last=False)
                rows = self._shows[key] = UserShows(self._caps)
            else:
                self._shows.move_to_end(key)
            rows.record(shows, now, forget_before)
        self._count(day, budget_units)

    def record_order(
        self,
        key: str | None,
        deal_id: str,
        course_id: str,
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
    ) -> None:
        if key is not None:
            self._orders.setdefault(key, []).append((deal_id, course_id, now))
        self._count(day, budget_units)

    def forget(self, key: str) -> int:
        entry = self._shows.pop(key, None)
        n = (len(entry.rows) if entry is not None else 0) + len(self._orders.pop(key, ()))
        for user_id in [u for u, k in self._keys.items() if k == key]:
            del self._keys[user_id]
        return n
