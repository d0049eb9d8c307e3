"""The SQLite backend's connection: one connection in WAL mode, ``BEGIN IMMEDIATE``, busy retries.

:class:`SQLiteConnection` opens the file, sets the pragmas, runs :mod:`~bandit_engine.store.schema`'s
migrations and implements the hooks of :class:`~bandit_engine.store.connection.LogConnection`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError, DataError, NotFoundError, StoreBusyError
from . import schema
from .connection import LogConnection, Synchronous, check_settings

__all__ = ["SQLiteConnection", "is_busy"]

T = TypeVar("T")
_BUSY_RETRIES = 50


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite reported a lock held by another connection."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _cannot_write(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "unable to open" in text or "readonly" in text or "read-only" in text


def _unwritable(path: str, exc: sqlite3.OperationalError) -> ConfigError:
    return ConfigError(
        f"path {path!r} cannot be opened for writing as an event log ({exc}): is its folder "
        "writable, and is the file not read-only?",
        field="path",
        value=path,
    )


class SQLiteConnection(LogConnection):
    """One SQLite connection in WAL mode with the log's schema (see
    :class:`~bandit_engine.store.EventLog` for the parameters)."""

    _conn: sqlite3.Connection

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hmac_key: bytes | None,
        synchronous: Synchronous = "NORMAL",
        read_only: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        check_settings(hmac_key, synchronous, busy_timeout)
        self._init_state(
            str(path),
            hmac_key=hmac_key,
            synchronous=synchronous,
            read_only=read_only,
            busy_timeout=busy_timeout,
        )
        memory = self.path == ":memory:"
        if read_only:
            if memory or not Path(self.path).is_file():
                raise NotFoundError.for_field("path", self.path, "is not an existing event log")
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        else:
            if not memory:
                parent = Path(self.path).resolve().parent
                if not parent.is_dir():
                    raise NotFoundError.for_field(
                        "path", self.path, "is in a folder that does not exist"
                    )
            try:
                self._conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
                )
            except sqlite3.OperationalError as exc:
                raise _unwritable(self.path, exc) from None
        try:
            self._setup(memory)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                raise StoreBusyError.opening(self.path, exc) from exc
            if isinstance(exc, sqlite3.OperationalError) and _cannot_write(exc):
                raise _unwritable(self.path, exc) from None
            raise DataError.for_field(
                "path", self.path, f"is not a bandit-engine event log or is damaged ({exc})"
            ) from None
        except BaseException:
            self._conn.close()
            raise

    # -- opening -----------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying on SQLITE_BUSY that the busy handler does not cover (WAL recovery,
        journal-mode switches by a second process opening the file at the same moment)."""
        delay = 0.005
        for attempt in range(_BUSY_RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == _BUSY_RETRIES - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        raise AssertionError("unreachable")  # pragma: no cover

    def _setup(self, memory: bool) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if not self.read_only:
            mode = self._retry(lambda: c.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if not memory and str(mode).lower() != "wal":
                raise DataError.for_field("journal_mode", mode, "could not be set to WAL")
        c.execute(f"PRAGMA synchronous = {self.synchronous}")
        # deleted rows (forget, purge) are overwritten with zeros, not left in free pages
        c.execute("PRAGMA secure_delete = ON")
        if self.read_only:
            self._check_meta(create=False)
            return
        self._retry(lambda: schema.migrate(c, self.path))
        self._check_meta(create=True)

    def _schema_version(self) -> int:
        return schema.SCHEMA_VERSION

    def _database_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.DatabaseError,)

    def _failure(self, exc: BaseException) -> StoreBusyError | None:
        if isinstance(exc, sqlite3.OperationalError):
            return StoreBusyError.during(self.path, exc)
        return None

    # -- the transaction hooks ---------------------------------------------------------------
    def _open_tx(self) -> int:
        c = self._conn
        self._retry(lambda: c.execute("BEGIN IMMEDIATE"))
        return int(c.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0])

    def begin_if_free(self) -> bool:
        """``BEGIN IMMEDIATE`` without waiting: ``False`` when another connection holds the
        write lock (see :meth:`LogConnection.begin_if_free`)."""
        with self._lock:
            if self._depth:
                raise ConfigError("a transaction is already open on this event log", field="begin")
            self._writable()
            c = self._conn
            c.execute("PRAGMA busy_timeout = 0")
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    return False
                raise StoreBusyError.during(self.path, exc) from exc
            finally:
                c.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            try:
                self._seq = self._seq0 = int(
                    c.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0]
                )
            except BaseException as exc:
                self._rollback()
                busy = self._failure(exc)
                if busy is not None:
                    raise busy from exc
                raise
            self._depth = 1
            return True

    def _close_tx(self, seq: int | None) -> None:
        c = self._conn
        if seq is not None:
            c.execute("UPDATE journal_seq SET seq = ? WHERE id = 0", (seq,))
        c.execute("COMMIT")

    def _abort_tx(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # -- basics ------------------------------------------------------------------------------
    def close(self) -> None:
        """Copy the write-ahead log into the main file, truncate it, and close (idempotent).

        After a clean close the database file alone holds every committed write, so a backup
        that copies only the ``.sqlite`` file misses nothing. (SQLite does the same when the last
        connection closes, but not while another process still has the file open.)
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self.read_only and self.path != ":memory:":
                try:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error:  # busy readers elsewhere: the WAL stays, nothing is lost
                    pass
            self._conn.close()

    def __repr__(self) -> str:
        return (
            f"EventLog({self.path!r}, synchronous={self.synchronous!r}, read_only={self.read_only})"
        )

    def truncate_wal(self) -> bool:
        """Copy the write-ahead log into the main file and truncate it to zero bytes, so that no
        older version of a page (a forgotten user's rows, say) stays in the ``-wal`` file.
        Returns ``False`` when another connection's reader kept it from finishing (retry later);
        call it outside a transaction."""
        with self._lock:
            if self.read_only or self.path == ":memory:":
                return True
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            return int(busy) == 0

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)
