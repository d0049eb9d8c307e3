"""Exactly one learner at a time: a lease on the event log.

A learner holds the role while it holds the lease, and every transaction it writes (learned
rewards, its journal position, a model version) renews the lease *inside that transaction*
(:meth:`LearnerLease.renew`): a learner that lost the role, even one that was only paused (a long
garbage collection, a stopped VM) and does not know it yet, finds out when its next write fails the
check, and that write is rolled back. So two learners never both commit, whichever way the role
changed hands.

Two mechanisms, one per backend (:func:`open_lease` picks):

* **SQLite** (:class:`RowLease`): the ``learner_lease`` row holds the holder's id and an expiry
  (``ttl`` seconds, 6 by default), renewed at every write and at least every ``ttl / 3`` seconds.
  A holder that died stops renewing; another learner takes the row once it has expired, so a
  take-over happens within ``ttl`` plus the waiting learner's poll interval (1 s): 7 s by default.
  The clock is the machine's (SQLite is shared by processes of one machine).
* **PostgreSQL** (:class:`AdvisoryLease`): a session-level advisory lock
  (``pg_try_advisory_lock``) on a connection of its own. The lock lives as long as that session:
  a learner killed with -9 closes its socket, PostgreSQL ends the session and frees the lock at
  once, and the next learner's poll takes it (within its poll interval). A learner cut off from
  the database loses its session after the TCP keepalive timeout (about 25 s). The fence in each
  transaction checks ``pg_locks`` for the lock under the session's backend pid. The
  ``learner_lease`` row is updated too (holder, epoch, position), for metrics and operators.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
import zlib
from typing import Any, Protocol

from .protocol import EventStore
from .target import is_url

__all__ = ["AdvisoryLease", "LearnerLease", "RowLease", "new_holder_id", "open_lease"]

#: first key of the advisory lock: "band" (the second is the log's schema, hashed)
_LOCK_CLASS = 0x62616E64


def new_holder_id() -> str:
    """A holder id that names the machine and process (for operators) and is unique."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LearnerLease(Protocol):
    """The learner role's lock (see the module docstring)."""

    holder: str
    ttl: float

    def acquire(self) -> bool:
        """Try once to take the role; ``True`` when this holder has it."""

    def renew(self, position: int | None = None) -> bool:
        """Inside the learner's write transaction: ``True`` while this holder still has the role
        (and records ``position``); ``False`` means roll back and stop learning."""

    def release(self) -> None:
        """Give the role up (a clean stop)."""

    def close(self) -> None:
        """Release and free what the lease holds (idempotent)."""


class RowLease:
    """The SQLite lease: a row with the holder and an expiry (module docstring)."""

    def __init__(self, log: EventStore, holder: str, *, ttl: float = 6.0) -> None:
        self.log = log
        self.holder = holder
        self.ttl = float(ttl)

    def acquire(self) -> bool:
        return self.log.lease_take(self.holder, now=time.time(), ttl=self.ttl)

    def renew(self, position: int | None = None) -> bool:
        return self.log.lease_renew(self.holder, now=time.time(), ttl=self.ttl, position=position)

    def release(self) -> None:
        self.log.lease_release(self.holder)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the log is gone: the lease expires on its own
            self.release()


class AdvisoryLease:
    """The PostgreSQL lease: a session advisory lock on a dedicated connection (module
    docstring)."""

    def __init__(self, log: EventStore, holder: str, *, ttl: float = 6.0) -> None:
        self.log = log
        self.holder = holder
        self.ttl = float(ttl)
        self._session: Any = None
        self._pid: int | None = None
        self._key: int | None = None

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(
            self.log.path,
            autocommit=True,
            connect_timeout=10,
            application_name="bandit-engine-learner-lock",
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        row = conn.execute("SELECT pg_backend_pid(), current_schema()").fetchone()
        assert row is not None
        self._pid = int(row[0])
        self._key = zlib.crc32(str(row[1]).encode("utf-8")) & 0x7FFFFFFF
        return conn

    def acquire(self) -> bool:
        import psycopg

        try:
            if self._session is None or self._session.closed:
                self._session = self._connect()
            got = bool(
                self._session.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, self._key)
                ).fetchone()[0]
            )
        except psycopg.Error:
            self._drop()
            return False
        if not got:
            return False
        # the lock decided; the row records who holds it (and moves the epoch on)
        return self.log.lease_take(self.holder, now=time.time(), ttl=self.ttl, force=True)

    def renew(self, position: int | None = None) -> bool:
        # runs in the learner's transaction (the log's connection): is the lock still ours?
        conn: Any = self.log._conn  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = ?"
            " AND objid::bigint = ? AND objsubid = 2 AND pid = ? AND granted",
            (_LOCK_CLASS, self._key, self._pid),
        ).fetchone()
        if not row or int(row[0]) != 1:
            return False
        return self.log.lease_renew(self.holder, now=time.time(), ttl=self.ttl, position=position)

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()  # the session ends, and the lock with it

    def release(self) -> None:
        try:
            self.log.lease_release(self.holder)
        finally:
            self._drop()

    def close(self) -> None:
        try:
            self.release()
        except Exception:
            self._drop()


def open_lease(log: EventStore, holder: str | None = None, *, ttl: float = 6.0) -> LearnerLease:
    """The lease for ``log``'s backend: an advisory lock on PostgreSQL, a row lease on SQLite."""
    who = holder if holder is not None else new_holder_id()
    if is_url(log.path):
        return AdvisoryLease(log, who, ttl=ttl)
    return RowLease(log, who, ttl=ttl)
