"""The schema step of the split roles (decision servers, one learner): step 3 of both backends.

``model_versions`` holds the model versions the learner publishes: an increasing integer
``version``, the journal position ``log_seq`` it covers (every entry up to it is in the state),
the lineage ``model_id``, the ``policy_version`` its decisions carry, and ``state``, the engine
saved as a model file's bytes (:func:`~bandit_engine.fileformat.dump_state`) without pending
decisions (a learner that takes over rebuilds those from the log). ``learner_lease`` has one row
(``id = 0``): who holds the learner role (``holder``), since when, until when on SQLite
(``expires_at``; PostgreSQL uses a session advisory lock instead, see
:mod:`~bandit_engine.store.lease`), how many times the role changed hands (``epoch``) and the
journal position the learner has consumed (``position``).

The same step exists for both backends (:mod:`~bandit_engine.store.schema` and
:mod:`~bandit_engine.store.pg_schema` list it third, after the business rules' step), idempotent
like the others.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["ROLE_TABLES", "pg_roles", "sqlite_roles"]

ROLE_TABLES = frozenset({"model_versions", "learner_lease"})

_SQLITE = (
    """CREATE TABLE IF NOT EXISTS model_versions (
        version INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        log_seq INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        n_learned INTEGER NOT NULL,
        learner TEXT NOT NULL,
        state BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS learner_lease (
        id INTEGER PRIMARY KEY,
        holder TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        acquired_at REAL,
        expires_at REAL,
        position INTEGER NOT NULL DEFAULT 0
    )""",
    "INSERT OR IGNORE INTO learner_lease (id, epoch, position) VALUES (0, 0, 0)",
)

_PG = (
    """CREATE TABLE IF NOT EXISTS model_versions (
        version BIGINT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        log_seq BIGINT NOT NULL,
        model_id TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        n_learned BIGINT NOT NULL,
        learner TEXT NOT NULL,
        state BYTEA NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS learner_lease (
        id BIGINT PRIMARY KEY,
        holder TEXT,
        epoch BIGINT NOT NULL DEFAULT 0,
        acquired_at DOUBLE PRECISION,
        expires_at DOUBLE PRECISION,
        position BIGINT NOT NULL DEFAULT 0
    )""",
    "INSERT INTO learner_lease (id, epoch, position) VALUES (0, 0, 0) ON CONFLICT (id) DO NOTHING",
)


def sqlite_roles(conn: sqlite3.Connection) -> None:
    """Add the model versions and the learner lease (SQLite)."""
    for statement in _SQLITE:
        conn.execute(statement)


def pg_roles(conn: Any) -> None:
    """Add the model versions and the learner lease (PostgreSQL; ``conn`` is a psycopg
    connection)."""
    for statement in _PG:
        conn.execute(statement)
