"""Column reads for reports and exports: the log in chunks of plain columns, in journal order.

:mod:`bandit_engine.reporting` builds its aggregates from these reads, so one report runs on both
backends. Every read pages by ``seq`` (``WHERE seq > last ORDER BY seq LIMIT n``: the primary key,
SQLite's rowid), so memory stays bounded by the chunk on a 10,000,000-decision log and PostgreSQL
returns one page per statement. User ids are never read: only a prefix of the stored pseudonym
(64 bits, enough to tell users apart in a report; no raw id is on disk to begin with).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ValidationError
from .connection import LogConnection

__all__ = [
    "ANONYMOUS_PREFIX",
    "CELL_FIELDS",
    "CELL_SEPARATOR",
    "DAY_SPAN",
    "DECISION_COLUMNS",
    "EXPORT_TABLES",
    "LogColumns",
]

#: What :meth:`LogColumns.decision_chunks` returns, in order.
DECISION_COLUMNS = ("seq_day", "user", "cell", "reward")
#: ``seq_day = seq * DAY_SPAN + day``: one integer for two (a report's time is mostly spent making
#: a Python object per value read); UTC day numbers stay below 2**16 until the year 2149.
DAY_SPAN = 1 << 16
#: The user of an anonymous decision in :meth:`LogColumns.decision_chunks`: as wide as a
#: pseudonym prefix, so a page of users is one fixed-width byte string for numpy.
ANONYMOUS_PREFIX = "-" * 16
#: The fields joined into ``cell`` (by :data:`CELL_SEPARATOR`), in order.
CELL_FIELDS = ("group", "presence", "city", "bundle_id")
#: ASCII unit separator: not expected in group names, cities or bundle ids.
CELL_SEPARATOR = "\x1f"
#: Tables :meth:`LogColumns.export_chunks` reads, with their columns (the user as pseudonym).
EXPORT_TABLES: dict[str, tuple[str, ...]] = {
    "decisions": (
        "seq",
        "decision_id",
        "ts",
        "user",
        "bundle_id",
        "deal_id",
        "course_id",
        "propensity",
        "policy_version",
        "model_id",
        "grp",
        "presence",
        "city",
        "status",
        "reward",
        "closed_at",
        "n_events",
    ),
    "events": ("seq", "decision_id", "event_id", "type", "value", "ts", "status"),
    "learned": ("seq", "decision_id", "bundle_id", "reward", "status", "n_events", "closed_at"),
}


def _window(column: str, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(float(since))
    if until is not None:
        where.append(f"{column} < ?")
        params.append(float(until))
    return "".join(f" AND {w}" for w in where), params


class LogColumns(LogConnection):
    """The column reads of both event logs (a mixin over the shared connection)."""

    #: SQL of the first 64 bits of the stored pseudonym as 16 hex digits
    _USER_PREFIX = 'substr("user", 1, 16)'
    #: whether to use ``floor`` (PostgreSQL; SQLite has none before 3.35, and its CAST truncates,
    #: which is the same for times after 1970)
    _FLOOR = False

    def decision_chunks(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        chunk: int = 500_000,
        after: int = 0,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Decisions with ``since <= ts < until`` and ``seq > after`` as row lists of :data:`DECISION_COLUMNS`:
        ``seq_day`` (``seq * DAY_SPAN + UTC day number``), ``user`` (the pseudonym's first 16
        hex digits, ``ANONYMOUS_PREFIX`` (16 dashes) when anonymous), ``cell`` (the :data:`CELL_FIELDS` joined by
        :data:`CELL_SEPARATOR`: group (``policy`` for rows logged without a holdout plan),
        presence and city (empty when unknown), bundle) and ``reward`` (``None`` while
        pending). ``after`` (a journal seq) lets a cache read only what was logged since its last
        read.

        The low-cardinality fields travel as one string built in SQL: reading a row costs a
        Python object per value, and this is most of a report's time on a large log."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValidationError.for_field("chunk", chunk, "must be an integer >= 1")
        extra, params = _window("ts", since, until)
        sep = "'" + CELL_SEPARATOR + "'"
        cell = f"||{sep}||".join(
            (
                "coalesce(grp, 'policy')",
                "coalesce(presence, '')",
                "coalesce(city, '')",
                "bundle_id",
            )
        )
        day = (
            "CAST(floor(ts / 86400.0) AS BIGINT)" if self._FLOOR else "CAST(ts / 86400 AS INTEGER)"
        )
        sql = (
            f"SELECT seq * {DAY_SPAN} + {day}, coalesce({self._USER_PREFIX}, '{ANONYMOUS_PREFIX}'), {cell},"
            " reward"
            " FROM decisions"
            " WHERE seq > ?" + extra + " ORDER BY seq LIMIT ?"
        )
        last = int(after)
        while True:
            with self._lock:
                rows = self._conn.execute(sql, [last, *params, chunk]).fetchall()
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            last = int(rows[-1][0]) // DAY_SPAN

    def event_totals(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        events_after: int = 0,
        events_upto: int | None = None,
    ) -> list[tuple[int, str, int, float]]:
        """``(decision seq, type, count, value sum)`` of the non-duplicate events (in the window
        or late) of the decisions with ``since <= ts < until``, grouped in SQL. ``events_after``
        / ``events_upto`` bound the events' own journal seqs (``after < seq <= upto``): what a
        cache needs to add the events logged since its last read."""
        extra, params = _window("d.ts", since, until)
        if events_after:
            extra += " AND e.seq > ?"
            params.append(int(events_after))
        if events_upto is not None:
            extra += " AND e.seq <= ?"
            params.append(int(events_upto))
        sql = (
            "SELECT d.seq, e.type, count(*), sum(e.value) FROM events e"
            " JOIN decisions d ON d.decision_id = e.decision_id"
            " WHERE e.status IN ('accepted', 'late')" + extra + " GROUP BY d.seq, e.type"
        )
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [(int(s), str(t), int(n), float(v or 0.0)) for s, t, n, v in rows]

    def live_marks(self) -> tuple[int, int, int]:
        """``(newest decision seq, newest event seq, number of decisions)``: where a cache of the
        log stands (a smaller count than the cache holds means rows were deleted: forget,
        purge or retention)."""
        with self._lock:
            d = self._conn.execute("SELECT max(seq), count(*) FROM decisions").fetchone()
            e = self._conn.execute("SELECT max(seq) FROM events").fetchone()
        return int(d[0] or 0), int(e[0] or 0), int(d[1] or 0)

    def rewards_of(self, seqs: Sequence[int]) -> list[tuple[int, float]]:
        """``(seq, reward)`` of the given decisions whose reward is learned (by primary key, in
        batches of 500: a cache asks for its pending decisions only)."""
        out: list[tuple[int, float]] = []
        for i in range(0, len(seqs), 500):
            part = [int(s) for s in seqs[i : i + 500]]
            marks = ", ".join("?" * len(part))
            sql = f"SELECT seq, reward FROM decisions WHERE seq IN ({marks}) AND reward IS NOT NULL"
            with self._lock:
                rows = self._conn.execute(sql, part).fetchall()
            out.extend((int(s), float(r)) for s, r in rows)
        return out

    def decision_health(
        self, *, after: int = 0, upto: int | None = None, small: float = 0.01
    ) -> list[tuple[str, int, float, float, int, int]]:
        """Per ``model_id`` of the decisions with ``after < seq <= upto``: ``(model, decisions,
        sum 1/p, sum 1/p^2, decisions with p < small, newest seq)`` (sums, so a cache adds what
        is new to what it holds; one row per model, not per policy version, which changes with
        every update learned)."""
        where, params = "seq > ?", [int(after)]
        if upto is not None:
            where += " AND seq <= ?"
            params.append(int(upto))
        sql = (
            "SELECT coalesce(model_id, ''), count(*), sum(1.0 / propensity),"
            " sum(1.0 / (propensity * propensity)),"
            " sum(CASE WHEN propensity < ? THEN 1 ELSE 0 END), max(seq)"
            " FROM decisions WHERE propensity > 0 AND " + where + " GROUP BY 1"
        )
        with self._lock:
            rows = self._conn.execute(sql, [float(small), *params]).fetchall()
        return [(str(m), int(n), float(w), float(w2), int(k), int(s)) for m, n, w, w2, k, s in rows]

    def decision_at(self, seq: int) -> tuple[str, str, float] | None:
        """``(policy_version, model_id, ts)`` of the decision with journal seq ``seq``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT policy_version, model_id, ts FROM decisions WHERE seq = ?", (int(seq),)
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), float(row[2]))

    def group_counts(
        self, *, since: float | None = None, until: float | None = None
    ) -> list[tuple[str, int, int]]:
        """``(group, users, decisions)`` per holdout group in the window, grouped in SQL (an
        anonymous decision counts as one user: it was bucketed by its own id)."""
        extra, params = _window("ts", since, until)
        sql = (
            "SELECT coalesce(grp, 'policy'), count(DISTINCT \"user\")"
            ' + sum(CASE WHEN "user" IS NULL THEN 1 ELSE 0 END), count(*)'
            " FROM decisions WHERE 1 = 1" + extra + " GROUP BY coalesce(grp, 'policy')"
        )
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [(str(g), int(u), int(n)) for g, u, n in rows]

    def users_before(self, ts: float) -> list[Any]:
        """Pseudonym prefixes of the users with a decision before ``ts`` (for "returning")."""
        sql = (
            "SELECT DISTINCT " + self._USER_PREFIX + " FROM decisions WHERE ts < ?"
            ' AND "user" IS NOT NULL'
        )
        with self._lock:
            rows = self._conn.execute(sql, (float(ts),)).fetchall()
        return [r[0] for r in rows]

    def export_chunks(
        self,
        table: str,
        *,
        since: float | None = None,
        until: float | None = None,
        chunk: int = 200_000,
    ) -> Iterator[tuple[Sequence[str], list[tuple[Any, ...]]]]:
        """``(columns, rows)`` pages of a table of :data:`EXPORT_TABLES` in journal order, the
        decisions' window applied to each table through its decision. ``user`` is the stored
        pseudonym (hex), never an id."""
        if table not in EXPORT_TABLES:
            raise ValidationError.for_field("table", table, f"must be one of {list(EXPORT_TABLES)}")
        cols = EXPORT_TABLES[table]
        if table == "decisions":
            extra, params = _window("t.ts", since, until)
            source = "decisions t"
        else:
            extra, params = _window("d.ts", since, until)
            source = f"{table} t JOIN decisions d ON d.decision_id = t.decision_id"
        select = ", ".join(f't."{c}"' if c == "user" else f"t.{c}" for c in cols)
        sql = f"SELECT {select} FROM {source} WHERE t.seq > ?{extra} ORDER BY t.seq LIMIT ?"
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(sql, [last, *params, chunk]).fetchall()
            if not rows:
                return
            if "user" in cols:
                i = cols.index("user")
                rows = [(*r[:i], self._user_text(r[i]), *r[i + 1 :]) for r in rows]
            yield cols, rows
            if len(rows) < chunk:
                return
            last = int(rows[-1][0])
