"""The one place that picks the database: :func:`open_log` turns a ``--db`` value into a store."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, NotFoundError
from .connection import Synchronous
from .log import EventLog
from .protocol import EventStore
from .target import is_url, looks_like_url, redact

__all__ = ["open_log"]


def open_log(
    db: str | os.PathLike[str],
    *,
    hmac_key: bytes | None,
    synchronous: Synchronous = "NORMAL",
    read_only: bool = False,
    busy_timeout: float = 30.0,
    must_exist: bool = False,
) -> EventStore:
    """Open the event log that ``db`` names: a ``postgresql://`` (or ``postgres://``) URL opens
    :class:`~bandit_engine.store.postgres.PostgresEventLog`, anything else is the path of a SQLite
    :class:`~bandit_engine.store.EventLog`.

    Parameters
    ----------
    db
        The file path or the URL (see :mod:`~bandit_engine.store.target`).
    hmac_key, synchronous, read_only, busy_timeout
        As for :class:`~bandit_engine.store.EventLog`; each backend gives them its meaning.
    must_exist
        Refuse to create a log: a missing file, or a database schema without one, raises
        :class:`~bandit_engine.errors.NotFoundError` (maintenance commands use it so a typo never
        creates an empty log).

    Raises
    ------
    ConfigError
        ``db`` is another kind of URL, a malformed PostgreSQL URL, one the server refused (user,
        password, database), or a PostgreSQL URL without psycopg installed.
    StoreBusyError
        The PostgreSQL server could not be reached, or the SQLite file is locked.
    NotFoundError
        ``must_exist`` (or ``read_only``) and there is no log.
    """
    if is_url(db):
        try:
            from .postgres import PostgresEventLog
        except ImportError as exc:
            raise ConfigError(
                f"db is a PostgreSQL URL, got {redact(db)!r}, but psycopg is not installed "
                f"({exc}): pip install 'bandit-engine[postgres]'",
                field="db",
                value=redact(db),
            ) from None
        return PostgresEventLog(
            os.fspath(db),
            hmac_key=hmac_key,
            synchronous=synchronous,
            read_only=read_only,
            busy_timeout=busy_timeout,
            must_exist=must_exist,
        )
    if looks_like_url(db):
        raise ConfigError.for_field("db", redact(db), "must be a file path or a postgresql:// URL")
    if must_exist and not Path(db).is_file():
        raise NotFoundError.for_field("db", os.fspath(db), "is not an existing event log")
    return EventLog(
        db,
        hmac_key=hmac_key,
        synchronous=synchronous,
        read_only=read_only,
        busy_timeout=busy_timeout,
    )
