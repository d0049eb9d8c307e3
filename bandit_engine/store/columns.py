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

__all__ = ["DECISION_COLUMNS", "EXPORT_TABLES", "LogColumns"]

#: What :meth:`LogColumns.decision_chunks` returns, in order.
DECISION_COLUMNS = (
    "seq",
    "ts",
    "group",
    "user",
    "presence",
    "city",
    "bundle_id",
    "reward",
    "status",
)
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

    #: SQL of the first 64 bits of the stored pseudonym (hex text here; PostgreSQL stores bytes)
    _USER_PREFIX = 'substr("user", 1, 16)'

    def decision_chunks(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        chunk: int = 500_000,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Decisions with ``since <= ts < until`` as row lists of :data:`DECISION_COLUMNS`
        (``group`` is ``"policy"`` for rows logged without a holdout plan; ``user`` the
        pseudonym's prefix or ``None``; ``reward`` ``None`` while pending)."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValidationError.for_field("chunk", chunk, "must be an integer >= 1")
        extra, params = _window("ts", since, until)
        sql = (
            "SELECT seq, ts, coalesce(grp, 'policy'), " + self._USER_PREFIX + ", presence, city,"
            " bundle_id, reward, status FROM decisions WHERE seq > ?" + extra
            + " ORDER BY seq LIMIT ?"
        )
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(sql, [last, *params, chunk]).fetchall()
            if not rows:
                return
            yield rows
            if len(rows) < chunk:
                return
            last = int(rows[-1][0])

    def event_totals(
        self, *, since: float | None = None, until: float | None = None
    ) -> list[tuple[int, str, int, float]]:
        """``(decision seq, type, count, value sum)`` of the non-duplicate events (in the window
        or late) of the decisions with ``since <= ts < until``, grouped in SQL."""
        extra, params = _window("d.ts", since, until)
        sql = (
            "SELECT d.seq, e.type, count(*), sum(e.value) FROM events e"
            " JOIN decisions d ON d.decision_id = e.decision_id"
            " WHERE e.status IN ('accepted', 'late')" + extra + " GROUP BY d.seq, e.type"
        )
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [(int(s), str(t), int(n), float(v or 0.0)) for s, t, n, v in rows]

    def users_before(self, ts: float) -> list[Any]:
        """Pseudonym prefixes of the users with a decision before ``ts`` (for "returning")."""
        sql = (
            "SELECT DISTINCT " + self._USER_PREFIX + ' FROM decisions WHERE ts < ?'
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
