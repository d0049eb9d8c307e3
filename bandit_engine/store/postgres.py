"""The PostgreSQL backend: the same event log on a PostgreSQL database, through psycopg 3 and a
connection pool.

:class:`PostgresEventLog` has every method of :class:`~bandit_engine.store.EventLog` and runs the
same SQL (the shared mixins); this module supplies the connection. Open it through
:func:`~bandit_engine.store.open_log` with a ``postgresql://`` URL. Needs the ``postgres`` extra
(``pip install 'bandit-engine[postgres]'``).

Connections
-----------
The log serializes its calls (one lock, as on SQLite), so it uses one connection at a time: a
write transaction keeps one from ``begin`` to ``commit``, and a read outside a transaction borrows
one for its statement. The pool (``psycopg_pool.ConnectionPool``) is there to keep a connection
open between calls and to replace a broken one: a connection lost with the server (a restart, a
network cut) fails the call that was using it with :class:`~bandit_engine.errors.StoreBusyError`
(nothing of it is committed; the server answers 503), and the pool checks each connection it hands
out, so the next call gets a fresh one once the server is back. That check costs no round trip
(it looks for anything the server sent to an idle connection: the notice of a shutdown, the end
of the stream); a closure it could not see yet fails the transaction's first round trip before
anything was written, or a read, and that one is repeated once on a fresh connection. TCP
keepalives (unless the URL sets its own) notice a server that vanished without a word within
about 25 s.

Round trips
-----------
Every statement whose result the log reads is a round trip to the server, and on a loaded machine
each costs far more than the work in it (the server process has to be scheduled). So a write
transaction's connection stays in pipeline mode from ``BEGIN`` to ``COMMIT``: ``BEGIN`` travels
with the journal lock, the journal's new head with ``COMMIT``, and rows nobody reads back (the
learned, admin and profile rows; decisions and events logged with ``wait=False``) with the next
statement that waits. An error of such a row arrives with that round trip and fails the whole
transaction (:class:`~bandit_engine.errors.StoreBusyError`; nothing of it is committed). A server
request then costs one round trip per read it needs (the profile, the decision an event names).

The journal
-----------
A write transaction starts by locking the journal's sequence row (``SELECT ... FOR UPDATE``), the
counterpart of SQLite's ``BEGIN IMMEDIATE``: writers from any number of processes or machines
take turns, ``seq`` order is commit order, and a writer waits at most ``busy_timeout``
(``lock_timeout``) before failing with ``StoreBusyError``. As on SQLite the journal assumes one
engine per database (per schema): several servers may write to one log safely, but their
interleaved journal cannot be rolled forward into one engine.

Durability
----------
``COMMIT`` returns after PostgreSQL has made the transaction durable as its ``synchronous_commit``
says, and the server answers a request only after that. ``synchronous`` maps onto it per session:
``"OFF"`` sets ``synchronous_commit = off`` (a PostgreSQL crash may lose the last few hundred
milliseconds of acknowledged writes, never corrupt the database), ``"FULL"`` sets it ``on``, and
``"NORMAL"`` (the default) keeps what the PostgreSQL server is configured with (``on`` unless an
administrator changed it). See the README for the whole statement.

Privacy
-------
Deleted rows (:meth:`forget_user`, :meth:`purge`) disappear from every query at commit, but
PostgreSQL keeps their old versions in the table files until ``VACUUM`` (autovacuum, usually
within minutes) reuses the space, and in its write-ahead log and any base backup or WAL archive
until those are recycled. :meth:`truncate_wal` cannot reach any of that (it returns ``True`` and
does nothing); the database administrator's retention of WAL archives and backups decides how long
such copies last.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from ..errors import ConfigError, DataError, NotFoundError, StoreBusyError
from . import pg_schema
from .columns import LogColumns
from .connection import LogConnection, Synchronous, check_settings
from .frames import LogFrames
from .profile_bulk import PgProfileBulk
from .reads import LogReads
from .retention import LogRetention
from .target import is_url, redact
from .versions import LogVersions
from .writes import LogWrites

__all__ = ["PgSession", "PostgresConnection", "PostgresEventLog", "to_pg"]

_COMMIT_SETTING = {"OFF": "off", "FULL": "on"}  # "NORMAL": the server's own setting
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


@functools.lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """The shared SQL (``?`` placeholders) in psycopg's form (``%s``). The shared statements hold
    no other ``?`` and no ``%`` (a test checks every statement the log runs)."""
    return sql.replace("?", "%s")


class _Rows:
    """A statement's result, fetched at once (the connection goes back to the pool right after)."""

    __slots__ = ("_next", "_rows", "rowcount")

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount = rowcount
        self._rows = rows
        self._next = 0

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _fetch(cur: psycopg.Cursor[Any]) -> _Rows:
    return _Rows(cur.rowcount, cur.fetchall() if cur.description is not None else [])


def _broken(conn: psycopg.Connection[Any]) -> bool:
    """Whether psycopg knows the connection is unusable (closed, or its socket failed)."""
    return conn.closed or conn.pgconn.status != pq.ConnStatus.OK


def _check(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it hands out, without a round trip when it can: an idle
    connection has nothing to read, so a readable socket means the server sent something
    unasked (the notice of a shutdown or a terminated backend, or the end of the stream) and the
    connection gets the full check (an empty query). A closure that has not arrived yet is caught
    by the retry in :meth:`PgSession.begin` / of a read."""
    if _broken(conn):
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


#: errors meaning the log's tables are not reachable any more (beside lost connections)
_GONE = (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)


class PgSession:
    """Runs the shared SQL on PostgreSQL: inside a transaction on that transaction's connection,
    otherwise on a pooled connection (autocommit) for the one statement.

    A transaction's connection is in pipeline mode from ``BEGIN`` to ``COMMIT``: a statement
    whose result is read (:meth:`execute`) costs one round trip, as always, and carries with it
    the statements :meth:`send` queued before it, which cost none of their own; ``BEGIN`` goes
    with the journal lock and the journal's new head with ``COMMIT``.

    A lost connection, a pool that cannot hand one out in time or a lock wait past
    ``lock_timeout`` raises :class:`~bandit_engine.errors.StoreBusyError` naming the database
    (never its password); so does a statement queued by :meth:`send` that the server refused
    (its error arrives with the next round trip, and the transaction cannot commit).
    """

    def __init__(self, pool: ConnectionPool[Any], where: str) -> None:
        self.pool = pool
        self.where = where
        self._tx: psycopg.Connection[Any] | None = None
        self._pipe: contextlib.ExitStack | None = None
        self._pipeline: psycopg.Pipeline | None = None
        self._sent = 0  # statements queued by send() since the last round trip

    @property
    def tx(self) -> psycopg.Connection[Any] | None:
        """The open transaction's connection (``None`` outside one), out of pipeline mode for the
        rest of the transaction: for a caller whose statements pipeline mode cannot carry
        (``COPY``). What :meth:`send` queued is run first; its error fails the transaction."""
        if self._tx is not None and self._pipe is not None:
            pipe, self._pipe, self._pipeline = self._pipe, None, None
            sent, self._sent = self._sent, 0
            try:
                pipe.close()
            except psycopg.Error as exc:
                raise (
                    self._refused(exc) if sent else StoreBusyError.during(self.where, exc)
                ) from exc
        return self._tx

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        query = to_pg(sql)
        try:
            if self._tx is not None:
                return self._roundtrip(self._tx, query, parameters)
            used: list[psycopg.Connection[Any]] = []
            try:
                with self.pool.connection() as conn:
                    used.append(conn)
                    return _fetch(conn.execute(query, parameters))
            except psycopg.OperationalError:
                if not (used and _broken(used[0]) and query.lstrip()[:6].upper() == "SELECT"):
                    raise
            # a read on a pooled connection the server had closed (a restart, an idle timeout)
            # that the cheap check could not see yet: a read is safe to repeat on a fresh one
            with self.pool.connection() as conn:
                return _fetch(conn.execute(query, parameters))
        except _GONE as exc:
            # a lost connection, or the log's schema dropped under a running server (issue 12):
            # the database cannot serve the log now; callers answer 503, never a half-logged result
            raise StoreBusyError.during(self.where, exc) from exc
        except psycopg.OperationalError as exc:
            raise StoreBusyError.during(self.where, exc) from exc

    def send(self, sql: str, parameters: Sequence[Any] = (), /) -> None:
        """Queue a statement whose result nobody reads: inside a transaction it travels with the
        next round trip (its error, if any, comes back then and fails the transaction);
        outside one it runs at once, like :meth:`execute`."""
        if self._tx is None:
            self.execute(sql, parameters)
            return
        try:
            self._tx.execute(to_pg(sql), parameters)
        except psycopg.Error as exc:
            raise self._refused(exc) from exc
        self._sent += 1

    def _roundtrip(self, conn: psycopg.Connection[Any], query: str, parameters: Any) -> _Rows:
        """One round trip: every queued statement, then ``query``, whose result is read. An error
        of a queued statement (which may surface here first) fails the transaction."""
        sent, self._sent = self._sent, 0
        try:
            cur = conn.execute(query, parameters)
            if self._pipeline is not None:
                self._pipeline.sync()
            return _fetch(cur)
        except psycopg.Error as exc:
            if sent:
                raise self._refused(exc) from exc
            raise

    def _refused(self, exc: psycopg.Error) -> StoreBusyError:
        if isinstance(exc, psycopg.OperationalError):
            return StoreBusyError.during(self.where, exc)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StoreBusyError(
            f"the event log {self.where!r} refused a write of the transaction ({reason}); "
            "nothing of it is committed; retry",
            field="db",
        )

    def begin(self, first: str) -> Any:
        """Take a connection from the pool, open a transaction on it and run ``first`` (a
        statement without parameters) in the same round trip; return its first row.

        A connection the server had closed while it sat in the pool fails here before anything of
        the transaction reached the server: it is dropped and the transaction opened once more on
        a fresh one."""
        for attempt in (0, 1):
            try:
                conn = self.pool.getconn()
            except psycopg.OperationalError as exc:
                raise StoreBusyError.during(self.where, exc) from exc
            try:
                self._tx, self._pipe, self._sent = conn, contextlib.ExitStack(), 0
                self._pipeline = self._pipe.enter_context(conn.pipeline())
                conn.execute("BEGIN")
                return self._roundtrip(conn, first, ()).fetchone()
            except BaseException as exc:
                self.rollback()
                if isinstance(exc, psycopg.OperationalError):
                    if attempt == 0 and _broken(conn):
                        continue
                    raise StoreBusyError.during(self.where, exc) from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def commit(self, last: str | None = None, parameters: Sequence[Any] = ()) -> None:
        """Commit and give the connection back; with ``last``, run that statement first, in the
        same round trip as the ``COMMIT`` (with whatever :meth:`send` queued; if any of them
        fails, nothing is committed). A transaction that failed earlier is never reported as
        committed (PostgreSQL would turn its ``COMMIT`` into a rollback)."""
        conn, pipe = self._tx, self._pipe
        if conn is None:
            return
        try:
            if conn.info.transaction_status == TransactionStatus.INERROR:
                raise StoreBusyError(
                    f"the event log {self.where!r} could not commit: an earlier statement of the "
                    "transaction failed; retry",
                    field="db",
                )
            if last is not None:
                conn.execute(to_pg(last), parameters)
            cur = conn.execute("COMMIT")
            self._pipe = self._pipeline = None
            try:
                if pipe is not None:
                    pipe.close()  # leaves pipeline mode: sends everything, reads every result
            except psycopg.Error as exc:
                raise self._refused(exc) from exc
            if cur.statusmessage != "COMMIT":
                raise StoreBusyError(
                    f"the event log {self.where!r} rolled the transaction back at commit "
                    f"({cur.statusmessage}); retry",
                    field="db",
                )
        except psycopg.OperationalError as exc:
            raise StoreBusyError.during(self.where, exc) from exc
        finally:
            self.rollback()  # no-op after a commit; gives the connection back either way

    def rollback(self) -> None:
        """Roll back (if a transaction is open) and give the connection back; never raises for a
        dead connection (the pool drops it)."""
        conn, self._tx = self._tx, None
        pipe, self._pipe, self._pipeline = self._pipe, None, None
        self._sent = 0
        if conn is None:
            return
        try:
            if pipe is not None:
                with contextlib.suppress(psycopg.Error):
                    pipe.close()  # what is queued runs (and fails, or is rolled back below)
            if conn.info.transaction_status != TransactionStatus.IDLE and not conn.closed:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            pass
        finally:
            self.pool.putconn(conn)


def _parse(url: str, where: str) -> dict[str, Any]:
    """The URL's connection parameters, or a ConfigError naming the field ``db``."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigError(
            f"db must be a valid PostgreSQL URL (postgresql://user@host:port/database), got "
            f"{where!r} ({str(exc).splitlines()[0]})",
            field="db",
            value=where,
        ) from None
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                f"db must name a port between 1 and 65535, got {port!r} in {where!r}",
                field="db",
                value=where,
            )
    return params


def _unreachable(where: str, exc: psycopg.Error) -> Exception:
    """The error of a database that could not be opened: refused by the server (a wrong user,
    password or database name: a configuration error) or not reached at all (retry later)."""
    reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if "FATAL" in reason:  # the server answered, and said no
        return ConfigError(
            f"db must name a PostgreSQL database this user may open, got {where!r} ({reason})",
            field="db",
            value=where,
        )
    return StoreBusyError(
        f"db must name a reachable PostgreSQL server, got {where!r} ({reason})",
        field="db",
        value=where,
    )


class PostgresConnection(LogConnection):
    """A pool of PostgreSQL connections holding the log's schema (see :class:`PostgresEventLog`
    for the parameters)."""

    _conn: PgSession
    _field = "db"

    def __init__(
        self,
        url: str,
        *,
        hmac_key: bytes | None,
        synchronous: Synchronous = "NORMAL",
        read_only: bool = False,
        busy_timeout: float = 30.0,
        must_exist: bool = False,
        connect_timeout: float = 10.0,
        pool_size: int = 2,
    ) -> None:
        check_settings(hmac_key, synchronous, busy_timeout)
        text = os.fspath(url)
        where = redact(text)
        if not is_url(text):
            raise ConfigError.for_field("db", where, "must be a postgresql:// URL")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError.for_field("pool_size", pool_size, "must be an integer >= 1")
        if not connect_timeout > 0:
            raise ConfigError.for_field("connect_timeout", connect_timeout, "must be > 0 seconds")
        self._init_state(
            text,
            hmac_key=hmac_key,
            synchronous=synchronous,
            read_only=read_only,
            busy_timeout=busy_timeout,
        )
        self._where = where
        params = _parse(text, where)
        extra: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = max(1, round(connect_timeout))
        if "application_name" not in params:
            extra["application_name"] = "bandit-engine"
        # TCP keepalives: a server that vanished from the network (no reset ever arrives) is
        # found out in about 25 s instead of the kernel's two hours, so a call waiting on it
        # fails with StoreBusyError rather than hanging the server; the URL may set its own
        extra.update({k: v for k, v in _KEEPALIVES.items() if k not in params})
        self._prepare(text, extra, must_exist=must_exist or read_only)
        pool: ConnectionPool[Any] = ConnectionPool(
            text,
            min_size=1,
            max_size=pool_size,
            kwargs=extra,
            configure=self._configure,
            check=_check,
            timeout=self.busy_timeout,
            name="bandit-event-log",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=connect_timeout)
        except psycopg.Error as exc:
            pool.close()
            raise _unreachable(where, exc) from None
        self._pool = pool
        self._conn = PgSession(pool, where)
        try:
            self._check_meta(create=not self.read_only)
        except BaseException:
            pool.close()
            raise

    # -- opening -----------------------------------------------------------------------------
    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Session settings of every connection (the pool calls it for each new one)."""
        # JSON columns come back as their text, as from SQLite: the shared code parses them
        conn.adapters.register_loader("json", TextLoader)
        settings = [f"SET lock_timeout = {int(self.busy_timeout * 1000)}"]
        if self.synchronous in _COMMIT_SETTING:
            settings.append(f"SET synchronous_commit = {_COMMIT_SETTING[self.synchronous]}")
        if self.read_only:
            settings.append("SET default_transaction_read_only = on")
        for statement in settings:
            conn.execute(statement)

    def _prepare(self, url: str, extra: dict[str, Any], *, must_exist: bool) -> None:
        """Connect once outside the pool: a clear error for a database that cannot be reached,
        then the migrations (or, for ``must_exist``, the check that a log is there)."""
        try:
            probe = psycopg.connect(url, **extra)
        except psycopg.Error as exc:
            raise _unreachable(self._where, exc) from None
        try:
            self._configure(probe)
            pg_schema.current_schema(probe, self._where)
            if must_exist and pg_schema.stored_version(probe) == 0:
                raise NotFoundError.for_field("db", self._where, "is not an existing event log")
            if not self.read_only:
                pg_schema.migrate(probe, self._where)
        except psycopg.OperationalError as exc:  # a lock held past lock_timeout, a lost link
            reason = str(exc).splitlines()[0]
            raise StoreBusyError(
                f"the event log {self._where!r} could not be opened ({reason}); retry later",
                field="db",
                value=self._where,
            ) from None
        except psycopg.Error as exc:
            reason = str(exc).splitlines()[0]
            raise DataError(
                f"db cannot hold an event log: {self._where!r} refused the schema ({reason})",
                field="db",
                value=self._where,
            ) from None
        finally:
            probe.close()

    @property
    def where(self) -> str:
        """The URL without its password."""
        return self._where

    def _schema_version(self) -> int:
        return pg_schema.SCHEMA_VERSION

    def _database_errors(self) -> tuple[type[BaseException], ...]:
        return (pg_errors.UndefinedTable,)

    def _failure(self, exc: BaseException) -> StoreBusyError | None:
        if isinstance(exc, psycopg.OperationalError):
            return StoreBusyError.during(self._where, exc)
        return None

    def _stored_user(self, pseudonym: str) -> Any:
        return bytes.fromhex(pseudonym)

    def _user_text(self, stored: Any) -> str | None:
        return None if stored is None else bytes(stored).hex()

    @property
    def commit_waits(self) -> bool:
        """Always: a commit is a round trip to the server (and its WAL flush)."""
        return True

    _pipelined = True

    def _send(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        self._conn.send(sql, parameters)

    # -- the transaction hooks ---------------------------------------------------------------
    def _open_tx(self) -> int:
        # the row lock is what BEGIN IMMEDIATE is on SQLite: one writer at a time holds the journal;
        # sent with BEGIN in one round trip
        row = self._conn.begin("SELECT seq FROM journal_seq WHERE id = 0 FOR UPDATE")
        return int(row[0])

    def _close_tx(self, seq: int | None) -> None:
        # the journal's new head and the COMMIT in one round trip
        if seq is None:
            self._conn.commit()
        else:
            self._conn.commit("UPDATE journal_seq SET seq = ? WHERE id = 0", (seq,))

    def _abort_tx(self) -> None:
        self._conn.rollback()

    # -- basics ------------------------------------------------------------------------------
    def close(self) -> None:
        """Roll back an open transaction and close the pool (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.rollback()
            self._pool.close()

    def __repr__(self) -> str:
        return (
            f"PostgresEventLog({self._where!r}, synchronous={self.synchronous!r}, "
            f"read_only={self.read_only})"
        )

    def truncate_wal(self) -> bool:
        """Nothing to do from here: PostgreSQL's old row versions, WAL and archives are its own
        (module docstring). Returns ``True``."""
        return True

    def integrity_check(self) -> str:
        """The log's own invariant: the journal's sequence is at or past every stored ``seq``
        (PostgreSQL checks its pages itself, with checksums where the cluster enables them).
        ``"ok"``, or what is wrong."""
        problems = []
        with self._lock:
            top = int(self._conn.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0])
            for table in ("decisions", "events", "learned", "admin"):
                high = self._conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()
                if int(high[0]) > top:
                    problems.append(f"journal_seq ({top}) is behind {table} (seq {int(high[0])})")
        return "\n".join(problems) or "ok"


class PostgresEventLog(
    LogWrites,
    LogReads,
    LogRetention,
    LogFrames,
    LogColumns,
    PgProfileBulk,
    LogVersions,
    PostgresConnection,
):
    """PostgreSQL event log: decisions, events, learned rewards, admin ops, profiles.

    Parameters
    ----------
    url
        ``postgresql://user@host:port/database`` (libpq's URL format; ``postgres://`` too). The log
        lives in the connection's current schema (``?options=-csearch_path%3Dname`` picks one); a
        new log is created only in an empty schema.
    hmac_key
        Secret key that pseudonymizes user ids (see :func:`~bandit_engine.store.load_hmac_key`).
        ``None`` opens the log for analysis only.
    synchronous
        ``"OFF"``, ``"NORMAL"`` or ``"FULL"``: the session's ``synchronous_commit`` (module
        docstring).
    read_only
        Open an existing log without writing anything (read-only transactions).
    busy_timeout
        Seconds a writer waits for another writer's journal lock (``lock_timeout``), and for a
        connection from the pool, before failing.
    must_exist
        Refuse (:class:`~bandit_engine.errors.NotFoundError`) instead of creating a new log.
    connect_timeout
        Seconds to wait for the server when opening (unless the URL sets ``connect_timeout``).
    pool_size
        Most connections the pool keeps open.

    Notes
    -----
    One instance may be shared by threads (an internal lock serializes them), as on SQLite.
    """

    _USER_PREFIX = "encode(substr(\"user\", 1, 8), 'hex')"  # stored as 32 bytes here
    _FLOOR = True
