"""The schema step of the shared live-behaviour state: step 6 of both backends (issue 12).

``user_behaviour`` holds each user's live-behaviour row (:mod:`~bandit_engine.features.behaviour`)
as the learner keeps it, so that every decision server reads the same, current row instead of the
copy inside the model version it loaded: ``"user"`` is the user's 12-byte behaviour key (the first
12 bytes of the log's keyed pseudonym; hex text in SQLite, bytes in PostgreSQL, like every
pseudonym column), ``width`` the row's float32 count, ``state`` the row and its three timestamps
(sealed with AES-GCM when the log encrypts at rest, :mod:`~bandit_engine.store.crypto`), ``ts`` the
row's last update (what :meth:`~bandit_engine.store.EventLog.purge` selects by), ``seq`` the
journal position the learner had consumed when it wrote the row. ``behaviour_forgets`` is a
short queue of forgotten users' keys for the learner (it drops its in-memory copy of the row and
deletes the queue entry at its next step), written only in logs a learner has served.

No raw user id in either table; :meth:`~bandit_engine.store.EventLog.forget_user` deletes the
user's row. The same step exists for both backends, idempotent like the others. Step 5 is another
change's; this one is numbered 6.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["BEHAVIOUR_TABLES", "pg_behaviour", "sqlite_behaviour"]

BEHAVIOUR_TABLES = frozenset({"user_behaviour", "behaviour_forgets"})

_SQLITE = (
    'CREATE TABLE IF NOT EXISTS user_behaviour ("user" TEXT PRIMARY KEY, width INTEGER NOT NULL,'
    " state BLOB NOT NULL, ts REAL NOT NULL, seq INTEGER NOT NULL)",
    'CREATE TABLE IF NOT EXISTS behaviour_forgets ("user" TEXT PRIMARY KEY)',
)

_PG = (
    'CREATE TABLE IF NOT EXISTS user_behaviour ("user" BYTEA PRIMARY KEY, width BIGINT NOT NULL,'
    " state BYTEA NOT NULL, ts DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL)",
    'CREATE TABLE IF NOT EXISTS behaviour_forgets ("user" BYTEA PRIMARY KEY)',
)


def sqlite_behaviour(conn: sqlite3.Connection) -> None:
    """Add the shared behaviour rows and the forget queue (SQLite)."""
    for statement in _SQLITE:
        conn.execute(statement)


def pg_behaviour(conn: Any) -> None:
    """Add the shared behaviour rows and the forget queue (PostgreSQL; ``conn`` is a psycopg
    connection)."""
    for statement in _PG:
        conn.execute(statement)
