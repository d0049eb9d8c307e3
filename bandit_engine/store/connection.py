"""The log's connection, whatever the database: the one transaction path, the journal sequence,
``meta``, the pseudonym key.

:class:`LogConnection` is the base of both event logs (:class:`~bandit_engine.store.EventLog` on
SQLite, :class:`~bandit_engine.store.postgres.PostgresEventLog` on PostgreSQL). The writing,
reading, retention and frame methods live in their own modules as mixins over it and run the same
SQL on both: it is written in the subset the two databases share (``?`` placeholders, which the
PostgreSQL backend turns into ``%s``; ``ON CONFLICT``; ``"user"`` quoted, since ``user`` is a
reserved word in PostgreSQL). What differs (opening, ``BEGIN``, how the journal row is locked,
which driver errors mean "busy or failing", how a pseudonym is stored) is a handful of hooks that
each backend implements.
"""

from __future__ import annotations

import hmac
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol, Self, TypeVar

from ..errors import ConfigError, DataError, StoreBusyError, ValidationError
from .crypto import FieldCipher, cipher_from_env
from .keys import MIN_KEY_BYTES, key_check, pseudonymize

__all__ = ["LogConnection", "SqlConnection", "SqlCursor", "Synchronous", "check_settings"]

Synchronous = Literal["OFF", "NORMAL", "FULL"]
T = TypeVar("T")


class SqlCursor(Protocol):
    """What the shared SQL reads back from a statement (a DB-API cursor's common part)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    """What the shared SQL needs of a connection: ``execute`` with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> SqlCursor: ...


def check_settings(hmac_key: bytes | None, synchronous: str, busy_timeout: float) -> None:
    """The settings every backend takes, checked before anything is opened."""
    if synchronous not in ("OFF", "NORMAL", "FULL"):
        raise ConfigError.for_field("synchronous", synchronous, "must be 'OFF', 'NORMAL' or 'FULL'")
    if isinstance(busy_timeout, bool) or not (
        isinstance(busy_timeout, int | float) and busy_timeout > 0 and math.isfinite(busy_timeout)
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


class LogConnection:
    """The backend-independent part of an event log (see :class:`~bandit_engine.store.EventLog`
    for the parameters). Subclasses open ``_conn`` and implement the hooks below."""

    _conn: SqlConnection
    #: the field that names the database in error messages ("path" for a file, "db" for a URL)
    _field = "path"

    def _init_state(
        self,
        path: str,
        *,
        hmac_key: bytes | None,
        synchronous: Synchronous,
        read_only: bool,
        busy_timeout: float,
    ) -> None:
        self.path = path
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
        # profile values and context vectors are sealed when BANDIT_ENCRYPTION_KEY is set
        self._cipher: FieldCipher | None = cipher_from_env()

    # -- hooks of a backend ------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The database as shown in messages (a URL without its password)."""
        return self.path

    def _schema_version(self) -> int:
        """The newest schema version this library knows for the backend."""
        raise NotImplementedError

    def _database_errors(self) -> tuple[type[BaseException], ...]:
        """Driver errors that mean "not (yet) an event log" when ``meta`` is read."""
        raise NotImplementedError

    def _failure(self, exc: BaseException) -> StoreBusyError | None:
        """The :class:`StoreBusyError` a driver error stands for (lock held, connection lost,
        disk failing), or ``None`` for any other exception."""
        raise NotImplementedError

    def _open_tx(self) -> int:
        """Start a write transaction that holds the journal (no other writer can allocate a seq
        until it ends) and return the journal's current ``seq``."""
        raise NotImplementedError

    def _close_tx(self, seq: int | None) -> None:
        """Store the new journal ``seq`` (when it moved) and commit."""
        raise NotImplementedError

    def _abort_tx(self) -> None:
        """Roll back the open transaction, if any (must not raise for a dead connection)."""
        raise NotImplementedError

    #: whether :meth:`_send` queues a statement for the next round trip (PostgreSQL's pipeline)
    #: instead of running it at once (SQLite: statements are calls, not round trips)
    _pipelined = False

    def _send(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        """Run a write whose result nobody reads; inside a transaction a backend may queue it for
        its next round trip (its error then surfaces there, or at commit, and fails the
        transaction)."""
        self._conn.execute(sql, parameters)

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a backend may retry transient lock errors here)."""
        return fn()

    def _stored_user(self, pseudonym: str) -> Any:
        """A pseudonym as the database stores it (hex text in SQLite)."""
        return pseudonym

    def _profile_key(self, pseudonym: str) -> bytes:
        """A pseudonym as the profile and consent tables store it: its 32 bytes, on both
        backends (schema step 5)."""
        return bytes.fromhex(pseudonym)

    def _user_text(self, stored: Any) -> str | None:
        """A stored pseudonym back as 64 hex characters (``None`` stays ``None``)."""
        return None if stored is None else str(stored)

    def close(self) -> None:
        """Release the database (idempotent)."""
        raise NotImplementedError

    def truncate_wal(self) -> bool:
        """Drop older copies of deleted rows that the database keeps outside its tables, where the
        backend can; ``True`` when done (see each backend for what it covers)."""
        raise NotImplementedError

    def integrity_check(self) -> str:
        """``"ok"`` when the database reports itself sound."""
        raise NotImplementedError

    @property
    def commit_waits(self) -> bool:
        """Whether a commit waits on the disk or the network long enough that a caller on an event
        loop should run it in a thread (the server does)."""
        return self.synchronous == "FULL"

    # -- opening -----------------------------------------------------------------------------
    def _check_meta(self, *, create: bool) -> None:
        c = self._conn
        try:
            rows = dict(c.execute("SELECT key, value FROM meta").fetchall())
        except self._database_errors() as exc:
            raise DataError.for_field(
                self._field, self.where, f"is not a bandit-engine event log ({exc})"
            ) from None
        check = None if self._key is None else key_check(self._key)
        if create:
            if "key_check" not in rows and check is not None:
                self._retry(
                    lambda: c.execute(
                        "INSERT INTO meta (key, value) VALUES ('key_check', ?) "
                        "ON CONFLICT (key) DO NOTHING",
                        (check,),
                    )
                )
            rows = dict(c.execute("SELECT key, value FROM meta").fetchall())
        version = rows.get("schema_version")
        if version is None:
            raise DataError.for_field(
                self._field, self.where, "is not a bandit-engine event log (no schema)"
            )
        newest = self._schema_version()
        if int(version) > newest:
            raise DataError.for_field(
                "schema_version",
                int(version),
                f"is newer than this library supports ({newest}); upgrade bandit-engine",
            )
        stored = rows.get("key_check")
        if check is not None and stored is not None and not hmac.compare_digest(stored, check):
            raise ConfigError(
                "hmac_key does not match the key this event log was created with: pseudonyms would "
                "not match the stored ones (use the original BANDIT_HMAC_KEY or a new database)",
                field="hmac_key",
            )

    # -- basics ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

        Nested calls join the outer transaction. The journal is taken at the start (SQLite:
        ``BEGIN IMMEDIATE``; PostgreSQL: a row lock on the journal's sequence), so a second process
        waits up to ``busy_timeout`` there instead of failing half-way. An exception rolls
        everything back and propagates. When the ``with`` block exits normally the commit has
        returned: the writes are as durable as the backend promises (module docstring). A lock
        still held by another process after ``busy_timeout``, a lost connection or a failing disk
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
                busy = self._failure(exc)
                if busy is not None:
                    raise busy from exc
                raise
            self._commit()

    def begin(self) -> None:
        """Open a transaction explicitly; writes join it until :meth:`commit`.

        For a caller that groups writes across calls it cannot wrap in one ``with`` block (the
        server's group commit). Unlike :meth:`transaction` it does not hold the instance lock in
        between, so :meth:`commit` may run on another thread; the caller must not use the log from
        two threads at once while it is open.
        """
        with self._lock:
            if self._depth:
                raise ConfigError("a transaction is already open on this event log", field="begin")
            self._begin()

    def begin_if_free(self) -> bool:
        """Like :meth:`begin`, but only when no other connection holds the write lock: ``False``
        at once otherwise, nothing opened (a caller on an event loop then writes from a thread,
        where waiting does not stop the loop). Backends that cannot tell without waiting return
        ``False`` always."""
        return False

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
        try:
            self._seq = self._seq0 = self._open_tx()
        except BaseException as exc:
            self._rollback()
            busy = self._failure(exc)
            if busy is not None:
                raise busy from exc
            raise
        self._depth = 1

    def _commit(self) -> None:
        try:
            self._close_tx(self._seq if self._seq != self._seq0 else None)
        except BaseException as exc:
            self._rollback()
            busy = self._failure(exc)
            if busy is not None:
                raise busy from exc
            raise
        self._depth = 0
        self._seq = None

    def _rollback(self) -> None:
        self._abort_tx()
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
