"""The log's connection: opening, the one transaction path, the journal sequence and ``meta``.

:class:`LogConnection` is the base of :class:`~bandit_engine.store.EventLog`; the writing, reading,
retention and frame methods live in their own modules as mixins over it.
"""

from __future__ import annotations

import hmac
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Self, TypeVar

from ..errors import ConfigError, DataError, NotFoundError, StoreBusyError, ValidationError
from . import schema
from .keys import MIN_KEY_BYTES, key_check, pseudonymize

__all__ = ["LogConnection", "Synchronous", "is_busy"]

Synchronous = Literal["OFF", "NORMAL", "FULL"]
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


class LogConnection:
    """One SQLite connection in WAL mode with the log's schema (see
    :class:`~bandit_engine.store.EventLog` for the parameters)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hmac_key: bytes | None,
        synchronous: Synchronous = "NORMAL",
        read_only: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL"):
            raise ConfigError.for_field(
                "synchronous", synchronous, "must be 'OFF', 'NORMAL' or 'FULL'"
            )
        if isinstance(busy_timeout, bool) or not (
            isinstance(busy_timeout, int | float)
            and busy_timeout > 0
            and math.isfinite(busy_timeout)
        ):
            raise ConfigError.for_field("busy_timeout", busy_timeout, "must be > 0 seconds")
        if hmac_key is not None:
            if not isinstance(hmac_key, bytes | bytearray):
                raise ConfigError.for_field(
                    "hmac_key", type(hmac_key).__name__, "must be bytes (see load_hmac_key)"
                )
            if len(hmac_key) < MIN_KEY_BYTES:
                raise ConfigError(
                    f"hmac_key must hold at least {MIN_KEY_BYTES} bytes, got {len(hmac_key)}",
                    field="hmac_key",
                )
        self.path = str(path)
        self.synchronous: Synchronous = synchronous
        self.read_only = bool(read_only)
        self.busy_timeout = float(busy_timeout)
        self._key = bytes(hmac_key) if hmac_key is not None else None
        self._lock = threading.RLock()
        self._depth = 0
        self._seq: int | None = None
        self._seq0 = 0
        self._closed = False
        # candidate tuple -> candidate_sets.id; most decisions reuse a handful of sets
        self._sets: dict[tuple[str, ...], int] = {}
        self._set_ids: dict[int, tuple[str, ...]] = {}
        self._pseudonyms: dict[str, str] = {}
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

    def _check_meta(self, *, create: bool) -> None:
        c = self._conn
        try:
            rows = dict(c.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DataError.for_field(
                "path", self.path, f"is not a bandit-engine event log ({exc})"
            ) from None
        check = None if self._key is None else key_check(self._key)
        if create:
            if "key_check" not in rows and check is not None:
                self._retry(
                    lambda: c.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)", (check,)
                    )
                )
            rows = dict(c.execute("SELECT key, value FROM meta").fetchall())
        version = rows.get("schema_version")
        if version is None:
            raise DataError.for_field(
                "path", self.path, "is not a bandit-engine event log (no schema)"
            )
        if int(version) > schema.SCHEMA_VERSION:
            raise DataError.for_field(
                "schema_version",
                int(version),
                f"is newer than this library supports ({schema.SCHEMA_VERSION}); upgrade bandit-engine",
            )
        stored = rows.get("key_check")
        if check is not None and stored is not None and not hmac.compare_digest(stored, check):
            raise ConfigError(
                "hmac_key does not match the key this event log was created with: pseudonyms would "
                "not match the stored ones (use the original BANDIT_HMAC_KEY or a new database)",
                field="hmac_key",
            )

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"EventLog({self.path!r}, synchronous={self.synchronous!r}, read_only={self.read_only})"
        )

    @property
    def pseudonymizes(self) -> bool:
        """Whether this log was opened with an HMAC key (can turn user ids into pseudonyms)."""
        return self._key is not None

    def pseudonym(self, user_id: str) -> str:
        """``HMAC-SHA256(key, user_id)`` as 64 hex characters: what the log stores for a user id."""
        if self._key is None:
            raise ConfigError(
                "this event log was opened without an HMAC key: user ids cannot be pseudonymized",
                field="hmac_key",
            )
        if not isinstance(user_id, str) or not user_id:
            raise ValidationError.for_field("user_id", user_id, "must be a non-empty string")
        cached = self._pseudonyms.get(user_id)
        if cached is not None:
            return cached
        value = pseudonymize(self._key, user_id)
        if len(self._pseudonyms) >= 65_536:  # memory only; a decision hashes its user twice
            self._pseudonyms.clear()
        self._pseudonyms[user_id] = value
        return value

    def _writable(self) -> None:
        if self.read_only:
            raise ConfigError.for_field("read_only", True, "forbids writing to this event log")

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Group writes into one transaction (one commit, one fsync under ``FULL``).

        Nested calls join the outer transaction. The write lock is taken at the start
        (``BEGIN IMMEDIATE``), so a second process waits up to ``busy_timeout`` there instead of
        failing half-way. An exception rolls everything back and propagates. When the ``with`` block
        exits normally the commit has returned: the writes are as durable as ``synchronous``
        promises. A lock still held by another process after ``busy_timeout``, or a failing disk,
        raises :class:`~bandit_engine.errors.StoreBusyError` (nothing was written).
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._begin()
            try:
                yield self
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreBusyError.during(self.path, exc) from exc
                raise
            self._commit()

    def begin(self) -> None:
        """Open a transaction explicitly (``BEGIN IMMEDIATE``); writes join it until :meth:`commit`.

        For a caller that groups writes across calls it cannot wrap in one ``with`` block (the
        server's group commit). Unlike :meth:`transaction` it does not hold the instance lock in
        between, so :meth:`commit` may run on another thread; the caller must not use the log from
        two threads at once while it is open.
        """
        with self._lock:
            if self._depth:
                raise ConfigError("a transaction is already open on this event log", field="begin")
            self._begin()

    def commit(self) -> None:
        """Commit the transaction opened by :meth:`begin` (on failure it is rolled back)."""
        with self._lock:
            if not self._depth:
                raise ConfigError("no transaction is open on this event log", field="commit")
            self._commit()

    def rollback(self) -> None:
        """Roll back the transaction opened by :meth:`begin` (no-op when none is open)."""
        with self._lock:
            self._rollback()

    # The one transaction path: transaction(), begin() and commit() all come here (lock held).
    def _begin(self) -> None:
        self._writable()
        c = self._conn
        try:
            self._retry(lambda: c.execute("BEGIN IMMEDIATE"))
            self._seq = self._seq0 = int(
                c.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0]
            )
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise StoreBusyError.during(self.path, exc) from exc
        except BaseException:
            self._rollback()
            raise
        self._depth = 1

    def _commit(self) -> None:
        c = self._conn
        try:
            if self._seq != self._seq0:
                c.execute("UPDATE journal_seq SET seq = ? WHERE id = 0", (self._seq,))
            c.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreBusyError.during(self.path, exc) from exc
            raise
        self._depth = 0
        self._seq = None

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._sets.clear()  # may name candidate sets the rollback removed
        self._depth = 0
        self._seq = None

    def _next_seq(self) -> int:
        assert self._seq is not None  # only called inside transaction()
        self._seq += 1
        return self._seq

    def last_seq(self) -> int:
        """The highest journal ``seq`` committed so far (0 for an empty log)."""
        with self._lock:
            return int(self._conn.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table (``None`` when absent)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (for example the seq covered by the latest checkpoint)."""
        if key in ("schema_version", "key_check", "created_at"):
            raise ValidationError.for_field("key", key, "is reserved")
        with self.transaction():
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
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

    # -- writing -----------------------------------------------------------------------------
