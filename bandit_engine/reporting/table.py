"""The report's input: decisions as columns (one array per field), from a live log or a simulator.

A :class:`DecisionTable` is what every report function reads, so a simulated launch and a live one
are measured by the same code: :func:`table_from_log` reads an event log (SQLite or PostgreSQL,
through :mod:`bandit_engine.store.columns`) in chunks; :func:`table_from_records` takes plain
per-decision records (the simulator's). Strings are factorised into integer codes with their
names, so aggregation is integer arithmetic (``numpy.bincount``), never a Python loop per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..holdout import POLICY_GROUP
from ..store import EventStore

__all__ = ["DAY", "DecisionTable", "table_from_log", "table_from_records"]

DAY = 86_400.0
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class DecisionTable:
    """Decisions as aligned columns (``n`` rows).

    Attributes
    ----------
    ts
        Decision times (epoch seconds).
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
        return int(np.unique(self.user).shape[0]) if self.n else 0


def _codes(values: Sequence[Any], fill: str = "unknown") -> tuple[IntArray, tuple[str, ...]]:
    arr = pd.Series(values, dtype=object).fillna(fill).astype(str).to_numpy()
    codes, names = pd.factorize(arr, sort=True)
    return codes.astype(np.int64), tuple(str(x) for x in names)


def _first_day_flags(user: IntArray, day: IntArray, returning: NDArray[np.bool_]) -> NDArray[np.bool_]:
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
        codes, uniques = pd.factorize(np.asarray(column, dtype=object), use_na_sentinel=True)
        index = self.index
        table = np.empty(len(uniques) + 1, dtype=np.int64)
        for i, u in enumerate(uniques):
            code = index.get(u)
            if code is None:
                code = index[u] = len(index)
            table[i] = code
        table[-1] = -1  # the NA sentinel (-1) indexes the last slot
        return table[codes]

    @property
    def names(self) -> list[Any]:
        return list(self.index)


def table_from_log(
    log: EventStore,
    *,
    since: float | None = None,
    until: float | None = None,
    chunk: int = 500_000,
) -> DecisionTable:
    """The decisions of an event log with ``since <= ts < until``, with their events.

    Reads the decisions in pages of ``chunk`` rows (memory: about 60 bytes per decision in the
    result) and the events grouped per decision and type in SQL."""
    seqs: list[IntArray] = []
    tss: list[FloatArray] = []
    rewards: list[FloatArray] = []
    facs = {name: _Factorizer() for name in ("group", "user", "presence", "city", "bundle")}
    codes: dict[str, list[IntArray]] = {name: [] for name in facs}
    for rows in log.decision_chunks(since=since, until=until, chunk=chunk):
        seq, ts, grp, user, presence, city, bundle, reward, _status = zip(*rows, strict=True)
        seqs.append(np.asarray(seq, dtype=np.int64))
        tss.append(np.asarray(ts, dtype=np.float64))
        rewards.append(np.asarray(reward, dtype=np.float64))  # None (pending) -> NaN
        for name, col in (
            ("group", grp),
            ("user", user),
            ("presence", presence),
            ("city", city),
            ("bundle", bundle),
        ):
            codes[name].append(facs[name].codes(col))
    seq_all = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    n = seq_all.shape[0]
    t = np.concatenate(tss) if tss else np.zeros(0)

    def joined(name: str) -> IntArray:
        return np.concatenate(codes[name]) if codes[name] else np.zeros(0, dtype=np.int64)

    def named(name: str, fill: str) -> tuple[IntArray, tuple[str, ...]]:
        # NULLs (-1) become the fill name; codes are re-sorted by name for stable output
        raw = joined(name)
        names = [fill if v is None else str(v) for v in facs[name].names]
        if (raw < 0).any() or not names:
            names.append(fill)
            raw = np.where(raw < 0, len(names) - 1, raw)
        uniq = sorted(set(names))
        remap = np.asarray([uniq.index(x) for x in names], dtype=np.int64)
        return (remap[raw] if raw.shape[0] else raw), tuple(uniq)

    g, gn = named("group", POLICY_GROUP)
    p, pn = named("presence", "unknown")
    c, cn = named("city", "unknown")
    b, bn = named("bundle", "unknown")
    user = joined("user")
    n_named = len(facs["user"].index)
    anonymous = user < 0
    user = user.copy()
    user[anonymous] = n_named + np.arange(int(anonymous.sum()), dtype=np.int64)
    returning = np.zeros(n_named + int(anonymous.sum()), dtype=bool)
    if since is not None and n:
        index = facs["user"].index
        for prefix in log.users_before(since):
            code = index.get(prefix)
            if code is not None:
                returning[code] = True
    events: dict[str, IntArray] = {}
    values: dict[str, FloatArray] = {}
    if n:
        totals = log.event_totals(since=since, until=until)
        if totals:
            ev_seq = np.asarray([r[0] for r in totals], dtype=np.int64)
            ev_type = [r[1] for r in totals]
            ev_n = np.asarray([r[2] for r in totals], dtype=np.int64)
            ev_v = np.asarray([r[3] for r in totals], dtype=np.float64)
            pos = np.searchsorted(seq_all, ev_seq)  # seq_all is in journal (ascending) order
            tcodes, tnames = pd.factorize(np.asarray(ev_type, dtype=object), sort=True)
            for k, name in enumerate(tnames):
                sel = tcodes == k
                events[str(name)] = np.bincount(pos[sel], weights=ev_n[sel], minlength=n).astype(
                    np.int64
                )
                values[str(name)] = np.bincount(pos[sel], weights=ev_v[sel], minlength=n)
    day = np.floor(t / DAY).astype(np.int64)
    return DecisionTable(
        ts=t,
        group=g,
        group_names=gn,
        user=user,
        presence=p,
        presence_names=pn,
        city=c,
        city_names=cn,
        bundle=b,
        bundle_names=bn,
        new=_first_day_flags(user, day, returning),
        reward=np.concatenate(rewards) if rewards else np.zeros(0),
        events=events,
        values=values,
    )
