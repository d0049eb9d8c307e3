"""The report's input: decisions as columns (one array per field), from a live log or a simulator.

A :class:`DecisionTable` is what every report function reads, so a simulated launch and a live one
are measured by the same code: :func:`table_from_log` reads an event log (SQLite or PostgreSQL,
through :mod:`bandit_engine.store.columns`) in chunks; :func:`table_from_records` takes plain
per-decision records (the simulator's). Strings are factorised into integer codes with their
names, so aggregation is integer arithmetic (``numpy.bincount``), never a Python loop per row.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..holdout import POLICY_GROUP
from ..store import EventStore
from ..store.columns import CELL_FIELDS, CELL_SEPARATOR, DAY_SPAN

__all__ = [
    "DAY",
    "DecisionTable",
    "LogColumns",
    "assemble",
    "events_of",
    "table_from_log",
    "table_from_records",
]

DAY = 86_400.0
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class DecisionTable:
    """Decisions as aligned columns (``n`` rows).

    Attributes
    ----------
    ts
        Decision times (epoch seconds; the start of their UTC day when read from a log, the
        precision every breakdown needs).
    group, presence, city, bundle
        Integer codes into ``group_names`` ... ``bundle_names`` (``"unknown"`` where not logged).
    user
        Cluster ids: one per user; an anonymous decision is its own cluster.
    new
        ``True`` where the decision is on the user's first day (UTC) in the log.
    reward
        The learned reward, NaN while the decision is pending.
    events, values
        ``{event type: count per decision}`` and ``{event type: value sum per decision}`` of the
        events kept (in the attribution window or late; duplicates excluded).
    """

    ts: FloatArray
    group: IntArray
    group_names: tuple[str, ...]
    user: IntArray
    presence: IntArray
    presence_names: tuple[str, ...]
    city: IntArray
    city_names: tuple[str, ...]
    bundle: IntArray
    bundle_names: tuple[str, ...]
    new: NDArray[np.bool_]
    reward: FloatArray
    events: Mapping[str, IntArray]
    values: Mapping[str, FloatArray]

    @property
    def n(self) -> int:
        return int(self.ts.shape[0])

    @property
    def n_users(self) -> int:
        """Users (clusters): the codes are dense, ``0 .. n_users - 1``."""
        return int(self.user.max()) + 1 if self.n else 0


def _codes(values: Sequence[Any], fill: str = "unknown") -> tuple[IntArray, tuple[str, ...]]:
    arr = pd.Series(values, dtype=object).fillna(fill).astype(str).to_numpy()
    codes, names = pd.factorize(arr, sort=True)
    return codes.astype(np.int64), tuple(str(x) for x in names)


def _first_day_flags(
    user: IntArray, day: IntArray, returning: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """``True`` where a decision falls on its user's first day; users flagged ``returning`` (seen
    before the window) are never new."""
    if user.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    n_users = int(user.max()) + 1
    first = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, user, day)
    out: NDArray[np.bool_] = (day == first[user]) & ~returning[user]
    return out


def table_from_records(
    *,
    ts: Sequence[float] | FloatArray,
    user: Sequence[Any],
    group: Sequence[Any] | None = None,
    presence: Sequence[Any] | None = None,
    city: Sequence[Any] | None = None,
    bundle: Sequence[Any],
    reward: Sequence[float] | FloatArray,
    events: Mapping[str, Sequence[int] | IntArray] | None = None,
    values: Mapping[str, Sequence[float] | FloatArray] | None = None,
    returning_users: Sequence[Any] = (),
) -> DecisionTable:
    """A table from per-decision columns (the simulator's records, a test's). ``user`` ``None``
    marks an anonymous decision; ``group`` ``None`` means no holdout plan (all ``policy``)."""
    t = np.asarray(ts, dtype=np.float64)
    n = t.shape[0]
    users = pd.Series(list(user), dtype=object)
    anonymous = users.isna().to_numpy()
    ucodes, unames = pd.factorize(users.where(~anonymous, None).to_numpy(), sort=False)
    ucodes = ucodes.astype(np.int64)
    n_named = len(unames)
    # every anonymous decision is its own cluster, numbered after the named users
    ucodes[anonymous] = n_named + np.arange(int(anonymous.sum()), dtype=np.int64)
    before = set(returning_users)
    returning = np.zeros(n_named + int(anonymous.sum()), dtype=bool)
    if before:
        returning[:n_named] = [u in before for u in unames]
    day = np.floor(t / DAY).astype(np.int64)
    g, gn = _codes([POLICY_GROUP] * n if group is None else list(group), POLICY_GROUP)
    p, pn = _codes([None] * n if presence is None else list(presence))
    c, cn = _codes([None] * n if city is None else list(city))
    b, bn = _codes(list(bundle))
    ev = {k: np.asarray(v, dtype=np.int64) for k, v in (events or {}).items()}
    va = {k: np.asarray(v, dtype=np.float64) for k, v in (values or {}).items()}
    for k in ev:
        va.setdefault(k, np.zeros(n))
    return DecisionTable(
        ts=t,
        group=g,
        group_names=gn,
        user=ucodes,
        presence=p,
        presence_names=pn,
        city=c,
        city_names=cn,
        bundle=b,
        bundle_names=bn,
        new=_first_day_flags(ucodes, day, returning),
        reward=np.asarray(reward, dtype=np.float64),
        events=ev,
        values=va,
    )


class _Factorizer:
    """Maps values to stable integer codes across chunks (a dict of the distinct values)."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}

    def codes(self, column: Sequence[Any]) -> IntArray:
        # a dict lookup per value: the distinct values (cells) are few and repeat, and this is
        # about 2.5x faster than hashing each page again with pandas (measured, 10^6 cells)
        index = self.index
        get = index.get
        out = np.fromiter((get(v, -1) for v in column), dtype=np.int64, count=len(column))
        for i in np.flatnonzero(out < 0).tolist():
            v = column[i]
            code = index.get(v)
            if code is None:
                code = index[v] = len(index)
            out[i] = code
        return out

    @property
    def names(self) -> list[Any]:
        return list(self.index)


_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing's odd constant


def _prefix_ints(prefixes: Sequence[str]) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """A 64-bit key per user from its 16 hex digits, computed in numpy (no Python object per
    user): the 16 ASCII bytes as two words, mixed (``a * C xor b``, a bijection of ``b`` for each
    ``a``; two users collide with probability about ``n^2 / 2^65``), and the anonymous flags
    (a leading ``-``)."""
    raw: NDArray[np.bytes_] | None = None
    if isinstance(prefixes, list) and prefixes and isinstance(prefixes[0], str):
        # every prefix 16 ASCII characters (the anonymous one too): one join and one view,
        # instead of a bytes conversion per value
        joined = "".join(prefixes)
        if len(joined) == 16 * len(prefixes) and joined.isascii():
            raw = np.frombuffer(joined.encode("ascii"), dtype="S16")
    if raw is None:
        raw = np.asarray(prefixes, dtype="S16")
    words = np.ascontiguousarray(raw).view("<u8").reshape(-1, 2)
    anonymous = raw.view(np.uint8).reshape(-1, 16)[:, 0] == ord("-")
    with np.errstate(over="ignore"):
        keys = (words[:, 0] * _MIX) ^ words[:, 1]
    return keys.astype(np.uint64, copy=False), anonymous


@dataclass
class LogColumns:
    """Decisions read from a log, as the columns :func:`table_from_log` assembles (mutable: a
    live cache, :class:`~bandit_engine.reporting.live.LiveReport`, appends to one)."""

    seq: IntArray
    day: IntArray
    reward: FloatArray
    prefix: NDArray[np.uint64]
    anonymous: NDArray[np.bool_]
    cell: IntArray
    cells: _Factorizer

    @classmethod
    def empty(cls) -> LogColumns:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, np.zeros(0), np.zeros(0, np.uint64), np.zeros(0, bool), z, _Factorizer())

    @property
    def n(self) -> int:
        return int(self.seq.shape[0])

    def read(
        self,
        log: EventStore,
        *,
        since: float | None = None,
        until: float | None = None,
        chunk: int = 500_000,
        after: int = 0,
        upto: int | None = None,
    ) -> int:
        """Append the decisions with ``after < seq (<= upto)`` in the window; returns how many."""
        seqs: list[IntArray] = [self.seq]
        days: list[IntArray] = [self.day]
        rewards: list[FloatArray] = [self.reward]
        uvals: list[NDArray[np.uint64]] = [self.prefix]
        uanon: list[NDArray[np.bool_]] = [self.anonymous]
        ccodes: list[IntArray] = [self.cell]
        # the pages are millions of fresh tuples with no cycles: the cyclic collector would
        # rescan them again and again (measured: a third of the read), so it is paused
        paused = gc.isenabled()
        gc.disable()
        try:
            for rows in log.decision_chunks(since=since, until=until, chunk=chunk, after=after):
                # one list per column (a comprehension each is about twice as fast as zip(*rows))
                seq_day = [r[0] for r in rows]
                user = [r[1] for r in rows]
                cell = [r[2] for r in rows]
                reward = [r[3] for r in rows]
                del rows
                sd = np.asarray(seq_day, dtype=np.int64)
                seq = sd // DAY_SPAN
                keep = slice(None)
                if upto is not None and seq.shape[0] and seq[-1] > upto:
                    # rows logged after the marks were taken: the next read gets them
                    k = int(np.searchsorted(seq, upto, side="right"))
                    keep = slice(0, k)
                    user, cell, reward = user[:k], cell[:k], reward[:k]
                seqs.append(seq[keep])
                days.append((sd % DAY_SPAN)[keep])
                rewards.append(np.asarray(reward, dtype=np.float64))  # None (pending) -> NaN
                values, anonymous = _prefix_ints(user)
                uvals.append(values)
                uanon.append(anonymous)
                ccodes.append(self.cells.codes(cell))
        finally:
            if paused:
                gc.enable()
        before = self.n
        self.seq = np.concatenate(seqs)
        self.day = np.concatenate(days)
        self.reward = np.concatenate(rewards)
        self.prefix = np.concatenate(uvals)
        self.anonymous = np.concatenate(uanon)
        self.cell = np.concatenate(ccodes)
        return self.n - before


def events_of(
    seq: IntArray, totals: Sequence[tuple[int, str, int, float]]
) -> dict[str, tuple[IntArray, FloatArray]]:
    """``{type: (count per decision, value per decision)}`` of ``event_totals`` rows, aligned
    with the decisions' ascending ``seq`` (rows of other decisions are dropped)."""
    out: dict[str, tuple[IntArray, FloatArray]] = {}
    n = seq.shape[0]
    if not totals or n == 0:
        return out
    ev_seq = np.asarray([r[0] for r in totals], dtype=np.int64)
    ev_n = np.asarray([r[2] for r in totals], dtype=np.int64)
    ev_v = np.asarray([r[3] for r in totals], dtype=np.float64)
    pos = np.minimum(np.searchsorted(seq, ev_seq), n - 1)
    known = seq[pos] == ev_seq
    types = np.asarray([r[1] for r in totals], dtype=object)
    tcodes, tnames = pd.factorize(types, sort=True)
    for k, name in enumerate(tnames):
        sel = (tcodes == k) & known
        out[str(name)] = (
            np.bincount(pos[sel], weights=ev_n[sel], minlength=n).astype(np.int64),
            np.bincount(pos[sel], weights=ev_v[sel], minlength=n).astype(np.float64),
        )
    return out


def assemble(
    cols: LogColumns,
    events: Mapping[str, tuple[IntArray, FloatArray]],
    returning_prefixes: Sequence[Any] = (),
) -> DecisionTable:
    """The :class:`DecisionTable` of read columns and their events (``returning_prefixes``:
    pseudonym prefixes of users seen before the window, never "new")."""
    n = cols.n
    # split the distinct cells into their fields, then index per decision
    parts = [str(c).split(CELL_SEPARATOR) for c in cols.cells.names]
    fields: dict[str, tuple[IntArray, tuple[str, ...]]] = {}
    for k, name in enumerate(CELL_FIELDS):
        fill = POLICY_GROUP if name == "group" else "unknown"
        per_cell, names = _codes([p[k] or fill for p in parts], fill)
        fields[name] = (per_cell[cols.cell] if n else per_cell[:0], names)
    anonymous = cols.anonymous
    codes, uniq = pd.factorize(cols.prefix[~anonymous])
    n_named = len(uniq)
    user = np.empty(n, dtype=np.int64)
    user[~anonymous] = codes
    # each anonymous decision is its own cluster, numbered after the named users
    user[anonymous] = n_named + np.arange(int(anonymous.sum()), dtype=np.int64)
    returning = np.zeros(n_named + int(anonymous.sum()), dtype=bool)
    if len(returning_prefixes) and n:
        seen, _ = _prefix_ints(returning_prefixes)
        returning[:n_named] = np.isin(np.asarray(uniq, dtype=np.uint64), seen)
    g, gn = fields["group"]
    pres, pn = fields["presence"]
    cit, cn = fields["city"]
    b, bn = fields["bundle_id"]
    return DecisionTable(
        ts=cols.day.astype(np.float64) * DAY,  # day precision is what every breakdown needs
        group=g,
        group_names=gn,
        user=user,
        presence=pres,
        presence_names=pn,
        city=cit,
        city_names=cn,
        bundle=b,
        bundle_names=bn,
        new=_first_day_flags(user, cols.day, returning),
        reward=cols.reward,
        events={k: v[0] for k, v in events.items()},
        values={k: v[1] for k, v in events.items()},
    )


def table_from_log(
    log: EventStore,
    *,
    since: float | None = None,
    until: float | None = None,
    chunk: int = 500_000,
) -> DecisionTable:
    """The decisions of an event log with ``since <= ts < until``, with their events.

    Reads the decisions in pages of ``chunk`` rows (:meth:`decision_chunks
    <bandit_engine.store.EventLog.decision_chunks>`: four values per row; group, segment and
    bundle arrive as one string per row, factorised here; users as 64-bit pseudonym prefixes
    decoded in numpy) and the events grouped per decision and type in SQL. Memory: about 40
    bytes per decision in the result. Reading the rows is most of the time on a large log
    (``benchmarks/bench_report.py``)."""
    cols = LogColumns.empty()
    cols.read(log, since=since, until=until, chunk=chunk)
    before: Sequence[Any] = ()
    if since is not None and cols.n:
        before = log.users_before(since)
    events = events_of(cols.seq, log.event_totals(since=since, until=until)) if cols.n else {}
    return assemble(cols, events, before)
