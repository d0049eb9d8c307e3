"""The event log: decisions, events, learned rewards, catalog changes and profiles in SQLite.

This is the only module of the project that speaks SQL. The simulator logs its decisions here, the
HTTP server commits every decision and event here before it answers, and ``bandit evaluate`` reads
it back with :meth:`EventLog.decisions_frame`.

Privacy
-------
Raw user ids never reach disk. Every user id is replaced by its pseudonym
``HMAC-SHA256(key, user_id)`` (hex) before it is written. The key comes from the environment
variable ``BANDIT_HMAC_KEY`` or from a key file (:func:`load_hmac_key`), never from the database.
The database keeps only a short one-way *check value* of the key (an HMAC of a fixed label), so that
opening a log with the wrong key fails loudly instead of silently splitting every user into two
pseudonyms. :meth:`EventLog.forget_user` deletes a user's profile and every decision, event and
learned row under their pseudonym; :meth:`EventLog.purge` deletes rows older than a cutoff.

The journal
-----------
Decisions, events, learned rewards and admin operations (catalog changes) share one global sequence
number ``seq``, allocated inside the write transaction, so :meth:`EventLog.entries_since` yields
them in the exact order they were committed. A restart loads the latest checkpoint (which records
the ``seq`` it covers) and replays the journal after it. The journal assumes **one engine per
database**: two server processes writing to one file are safe for SQLite (each transaction is
atomic, ``busy_timeout`` makes writers wait instead of failing) but their interleaved journal cannot
be replayed into one engine.

Schema (version in ``meta``)
----------------------------
``decisions`` (rowid = seq; context ``x`` and chosen-bundle features ``z`` as float64 blobs; scores and
probabilities as float64 blobs; the candidate list by reference to ``candidate_sets``, which stores each
distinct list once), ``events`` (rowid = seq; ``UNIQUE(decision_id, event_id)``), ``learned`` (rowid =
seq), ``admin`` (catalog changes, JSON), ``profiles`` (pseudonym, platform, JSON fields), ``meta`` and
``journal_seq``. Indexes are few on purpose: every index is one more B-tree each insert writes.

Durability (SQLite in WAL mode)
-------------------------------
The log always runs in WAL mode. What survives depends on ``synchronous``
(sources: https://www.sqlite.org/pragma.html#pragma_synchronous and
https://www.sqlite.org/wal.html#performance_considerations):

===========  ================================  =================================================
synchronous  process crash (kill -9, OOM)      OS crash or power loss
===========  ================================  =================================================
``FULL``     every committed transaction kept  every committed transaction kept: the WAL is
                                               fsynced at each commit (if the disk honours fsync)
``NORMAL``   every committed transaction kept  the database stays consistent, but the most recent
                                               commits (since the last WAL sync, which happens at
                                               checkpoints) may be rolled back
``OFF``      every committed transaction kept  recent commits may be lost and the database file
                                               **may be corrupted** (checkpoints are not synced)
===========  ================================  =================================================

A committed transaction is in the operating system's hands as soon as ``COMMIT`` returns, so a
process crash never loses it in any mode. ``FULL`` costs one fsync per commit (about 3 ms on the
reference machine); :meth:`EventLog.transaction` lets a caller group many writes into one commit so
durable throughput does not pay that cost per request.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import math
import os
import secrets
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
import sqlite_utils
from numpy.typing import NDArray

from .errors import ConfigError, DataError, NotFoundError, ValidationError
from .records import Decision, LearnedReward

__all__ = [
    "SCHEMA_VERSION",
    "EventLog",
    "JournalEntry",
    "Synchronous",
    "bundle_matrix",
    "context_matrix",
    "load_hmac_key",
]

SCHEMA_VERSION = 1
Synchronous = Literal["OFF", "NORMAL", "FULL"]
EventLogStatus = Literal["accepted", "duplicate", "late"]
FloatArray = NDArray[np.float64]
T = TypeVar("T")

_KEY_CHECK_LABEL = b"bandit-engine event log key check v1"
_MIN_KEY_BYTES = 16
_KEY_HINT = (
    "set the environment variable {env} to a random secret of at least 16 characters, for example "
    "`export {env}=$(python -c 'import secrets; print(secrets.token_hex(32))')`, "
    "or pass a key file; "
    "keep it: the same key is needed to find a user's rows again"
)
_EVENT_STATUSES = ("accepted", "duplicate", "late")
_BUSY_RETRIES = 50


def load_hmac_key(
    env: str = "BANDIT_HMAC_KEY",
    file: str | os.PathLike[str] | None = None,
    *,
    ephemeral: bool = False,
) -> bytes:
    """The secret key that pseudonymizes user ids.

    Parameters
    ----------
    env
        Environment variable holding the key (used when ``file`` is not given).
    file
        A file holding the key (surrounding whitespace stripped); takes precedence over ``env``.
    ephemeral
        When no key is configured, generate a random one for this process only (demos and tests). A
        log written with an ephemeral key cannot be reopened (its key check fails), and users cannot
        be forgotten after the process ends. Never the default.

    Raises
    ------
    ConfigError
        No key configured (with a hint how to set one), or a key shorter than 16 bytes.
    """
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise ConfigError.for_field("hmac_key_file", str(p), "must be an existing file")
        key = p.read_bytes().strip()
        source = "hmac_key_file"
    else:
        text = os.environ.get(env)
        if text is None or not text.strip():
            if ephemeral:
                warnings.warn(
                    "no HMAC key configured: using an ephemeral key; pseudonyms will not match "
                    "after a restart",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return secrets.token_bytes(32)
            raise ConfigError(
                f"no HMAC key for user pseudonyms: {_KEY_HINT.format(env=env)}", field=env
            )
        key = text.strip().encode("utf-8")
        source = env
    if len(key) < _MIN_KEY_BYTES:
        # never echo the key itself: only its length
        raise ConfigError(
            f"{source} must hold at least {_MIN_KEY_BYTES} bytes, got {len(key)}", field=source
        )
    return key


@dataclass(frozen=True)
class JournalEntry:
    """One journal row, in commit order.

    ``kind`` is ``"decision"``, ``"event"``, ``"learned"`` or ``"admin"``; ``data`` holds the row's
    fields (for a decision ``x`` is a float64 array and ``candidates`` a list).
    """

    seq: int
    kind: Literal["decision", "event", "learned", "admin"]
    data: dict[str, Any]


def _blob(a: FloatArray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def _unblob(b: bytes | None, dim: int | None) -> FloatArray:
    if b is None:
        return np.empty(0)
    out = np.frombuffer(b, dtype="<f8").astype(np.float64)
    if dim is not None and out.shape[0] != dim:
        raise DataError.for_field(
            "x_dim", dim, f"does not match the stored vector ({out.shape[0]})"
        )
    return out


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _vector(name: str, value: Any) -> FloatArray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError.for_field(name, value, "must be a 1-D array of numbers") from None
    if a.ndim != 1:
        raise ValidationError.for_field(name, a.shape, "must be a 1-D array (shape given)")
    return a


class EventLog:
    """SQLite event log (WAL mode): decisions, events, learned rewards, admin ops, profiles.

    Parameters
    ----------
    path
        Database file (created with its schema when missing). ``":memory:"`` works for tests.
    hmac_key
        Secret key that pseudonymizes user ids (see :func:`load_hmac_key`). ``None`` opens the log
        for analysis only: every method that takes a user id then raises
        :class:`~bandit_engine.errors.ConfigError`.
    synchronous
        ``"OFF"``, ``"NORMAL"`` or ``"FULL"``: durability versus commit cost (module docstring).
    read_only
        Open an existing log without writing anything.
    busy_timeout
        Seconds a writer waits for another connection's write lock before failing.

    Notes
    -----
    One instance may be shared by threads (an internal lock serializes them); the HTTP server uses
    one worker thread. Methods that write run in their own transaction unless called inside
    :meth:`transaction`, which groups them into one commit.
    """

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
            if len(hmac_key) < _MIN_KEY_BYTES:
                raise ConfigError(
                    f"hmac_key must hold at least {_MIN_KEY_BYTES} bytes, got {len(hmac_key)}",
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
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        try:
            self._setup(memory)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise
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
                if not _is_busy(exc) or attempt == _BUSY_RETRIES - 1:
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
        if self.read_only:
            self._check_meta(create=False)
            return
        self._retry(self._create_schema)
        self._check_meta(create=True)

    def _create_schema(self) -> None:
        db = sqlite_utils.Database(self._conn)
        db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db.table("journal_seq").create({"id": int, "seq": int}, pk="id", if_not_exists=True)
        db.table("decisions").create(
            {
                "seq": int,
                "decision_id": str,
                "ts": float,
                "user": str,
                "bundle_id": str,
                "deal_id": str,
                "course_id": str,
                "propensity": float,
                "candidate_set": int,
                "probabilities": bytes,
                "scores": bytes,
                "policy_version": str,
                "model_id": str,
                "x": bytes,
                "x_dim": int,
                "z": bytes,
                "z_dim": int,
                "status": str,
                "reward": float,
                "closed_at": float,
                "n_events": int,
            },
            pk="seq",  # the rowid: journal order for free, no extra index
            not_null=[
                "decision_id",
                "ts",
                "bundle_id",
                "deal_id",
                "course_id",
                "propensity",
                "candidate_set",
                "scores",
                "policy_version",
                "model_id",
                "x",
                "x_dim",
                "status",
                "n_events",
            ],
            defaults={"status": "pending", "n_events": 0},
            if_not_exists=True,
        )
        db.table("events").create(
            {
                "seq": int,
                "decision_id": str,
                "event_id": str,
                "type": str,
                "value": float,
                "ts": float,
                "status": str,
            },
            pk="seq",
            not_null=["decision_id", "type", "value", "ts", "status"],
            if_not_exists=True,
        )
        db.table("learned").create(
            {
                "seq": int,
                "decision_id": str,
                "bundle_id": str,
                "reward": float,
                "status": str,
                "n_events": int,
                "closed_at": float,
            },
            pk="seq",
            not_null=["decision_id", "bundle_id", "reward", "status", "n_events", "closed_at"],
            if_not_exists=True,
        )
        db.table("admin").create(
            {"seq": int, "ts": float, "op": str, "payload": str},
            pk="seq",
            not_null=["ts", "op", "payload"],
            if_not_exists=True,
        )
        db.table("candidate_sets").create(
            {"id": int, "digest": str, "ids": str},
            pk="id",
            not_null=["digest", "ids"],
            if_not_exists=True,
        )
        db.table("profiles").create(
            {"user": str, "platform": str, "fields": str, "updated_at": float},
            pk=("user", "platform"),
            not_null=["fields", "updated_at"],
            if_not_exists=True,
        )
        # few indexes on purpose: each one is another B-tree written by every insert
        for table, cols, unique in (
            ("decisions", ["decision_id"], True),
            ("decisions", ["user"], False),  # forget_user
            ("candidate_sets", ["digest"], True),
            ("events", ["decision_id", "event_id"], True),
            ("learned", ["decision_id"], True),
        ):
            db.table(table).create_index(cols, unique=unique, if_not_exists=True)
        self._conn.execute("INSERT OR IGNORE INTO journal_seq (id, seq) VALUES (0, 0)")

    def _check_meta(self, *, create: bool) -> None:
        c = self._conn
        try:
            rows = dict(c.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DataError.for_field(
                "path", self.path, f"is not a bandit-engine event log ({exc})"
            ) from None
        check = self._key_check()
        if create:
            if "schema_version" not in rows:
                self._retry(
                    lambda: c.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?), (?, ?)",
                        ("schema_version", str(SCHEMA_VERSION), "created_at", repr(time.time())),
                    )
                )
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
        if int(version) > SCHEMA_VERSION:
            raise DataError.for_field(
                "schema_version",
                int(version),
                f"is newer than this library supports ({SCHEMA_VERSION}); upgrade bandit-engine",
            )
        stored = rows.get("key_check")
        if check is not None and stored is not None and not hmac.compare_digest(stored, check):
            raise ConfigError(
                "hmac_key does not match the key this event log was created with: pseudonyms would "
                "not match the stored ones (use the original BANDIT_HMAC_KEY or a new database)",
                field="hmac_key",
            )

    def _key_check(self) -> str | None:
        if self._key is None:
            return None
        return hmac.new(self._key, _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()[:16]

    # -- basics ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"EventLog({self.path!r}, synchronous={self.synchronous!r}, read_only={self.read_only})"
        )

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
        value = hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
        if len(self._pseudonyms) >= 65_536:  # memory only; a decision hashes its user twice
            self._pseudonyms.clear()
        self._pseudonyms[user_id] = value
        return value

    def _writable(self) -> None:
        if self.read_only:
            raise ConfigError.for_field("read_only", True, "forbids writing to this event log")

    @contextmanager
    def transaction(self) -> Iterator[EventLog]:
        """Group writes into one transaction (one commit, one fsync under ``FULL``).

        Nested calls join the outer transaction. The write lock is taken at the start
        (``BEGIN IMMEDIATE``), so a second process waits up to ``busy_timeout`` there instead of
        failing half-way. An exception rolls everything back and propagates. When the ``with`` block
        exits normally the commit has returned: the writes are as durable as ``synchronous``
        promises.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._writable()
            c = self._conn
            self._retry(lambda: c.execute("BEGIN IMMEDIATE"))
            self._depth = 1
            try:
                self._seq = self._seq0 = int(
                    c.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0]
                )
                yield self
                if self._seq != self._seq0:
                    c.execute("UPDATE journal_seq SET seq = ? WHERE id = 0", (self._seq,))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                self._sets.clear()  # may name sets the rollback removed
                raise
            finally:
                self._depth = 0
                self._seq = None

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
            self._writable()
            c = self._conn
            self._retry(lambda: c.execute("BEGIN IMMEDIATE"))
            try:
                self._seq = self._seq0 = int(
                    c.execute("SELECT seq FROM journal_seq WHERE id = 0").fetchone()[0]
                )
            except BaseException:
                c.execute("ROLLBACK")
                raise
            self._depth = 1

    def commit(self) -> None:
        """Commit the transaction opened by :meth:`begin` (on failure it is rolled back)."""
        with self._lock:
            if not self._depth:
                raise ConfigError("no transaction is open on this event log", field="commit")
            c = self._conn
            try:
                if self._seq != self._seq0:
                    c.execute("UPDATE journal_seq SET seq = ? WHERE id = 0", (self._seq,))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                self._sets.clear()
                raise
            finally:
                self._depth = 0
                self._seq = None

    def rollback(self) -> None:
        """Roll back the transaction opened by :meth:`begin` (no-op when none is open)."""
        with self._lock:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._sets.clear()
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

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    # -- writing -----------------------------------------------------------------------------
    def log_decision(
        self,
        decision: Decision,
        *,
        user_id: str | None,
        x: FloatArray,
        z: FloatArray,
        model_id: str,
    ) -> int:
        """Store a pending decision with its context ``x`` and the chosen bundle's features ``z``.

        Returns its journal ``seq``. A reused ``decision_id`` raises
        :class:`~bandit_engine.errors.ValidationError` naming it.
        """
        xa = _vector("x", x)
        za = _vector("z", z)
        user = self.pseudonym(user_id) if user_id is not None else None
        probs = decision.probabilities
        params: list[Any] = [
            0,
            decision.decision_id,
            float(decision.timestamp),
            user,
            decision.bundle_id,
            decision.deal_id,
            decision.course_id,
            float(decision.propensity),
            0,
            None if probs is None else _blob(np.asarray(probs, dtype=np.float64)),
            _blob(np.asarray(decision.scores, dtype=np.float64)),
            decision.policy_version,
            model_id,
            _blob(xa),
            int(xa.shape[0]),
            _blob(za),
            int(za.shape[0]),
        ]
        with self.transaction():
            params[8] = self._candidate_set(tuple(decision.candidates))
            seq = self._next_seq()
            params[0] = seq
            try:
                self._conn.execute(
                    "INSERT INTO decisions (seq, decision_id, ts, user, bundle_id, deal_id,"
                    " course_id, propensity, candidate_set, probabilities, scores, policy_version,"
                    " model_id, x, x_dim, z, z_dim) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    params,
                )
            except sqlite3.IntegrityError:
                self._seq = seq - 1
                raise ValidationError.for_field(
                    "decision_id", decision.decision_id, "is already in the event log"
                ) from None
        return seq

    def _candidate_set(self, ids: tuple[str, ...]) -> int:
        """Id of a candidate list in ``candidate_sets`` (inside a transaction).

        Sets are never deleted (they hold no user data), so an id, once committed, names the same
        list for every process and every cache.
        """
        cached = self._sets.get(ids)
        if cached is not None:
            return cached
        text = json.dumps(list(ids), separators=(",", ":"))
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        c = self._conn
        c.execute(
            "INSERT INTO candidate_sets (digest, ids) VALUES (?, ?) ON CONFLICT(digest) DO NOTHING",
            (digest, text),
        )
        set_id = int(
            c.execute("SELECT id FROM candidate_sets WHERE digest = ?", (digest,)).fetchone()[0]
        )
        if len(self._sets) >= 4096:
            self._sets.clear()
        self._sets[ids] = set_id
        return set_id

    def _candidates(self, set_id: int) -> tuple[str, ...]:
        """The candidate list of a ``candidate_sets`` id (cached; sets never change)."""
        ids = self._set_ids.get(set_id)
        if ids is None:
            with self._lock:
                row = self._conn.execute(
                    "SELECT ids FROM candidate_sets WHERE id = ?", (set_id,)
                ).fetchone()
            if row is None:
                raise DataError.for_field("candidate_set", set_id, "is missing from the log")
            ids = tuple(json.loads(row[0]))
            if len(self._set_ids) >= 4096:
                self._set_ids.clear()
            self._set_ids[set_id] = ids
        return ids

    def log_event(
        self,
        decision_id: str,
        type: str,
        value: float,
        ts: float,
        event_id: str | None,
        status: str,
    ) -> bool:
        """Store an outcome event with the status the engine gave it (accepted / duplicate / late).

        An ``(decision_id, event_id)`` pair is stored once, whatever the number of concurrent
        requests or processes posting it: returns ``True`` when this call stored it, ``False`` when
        it was already there. Events without ``event_id`` cannot be de-duplicated and are always
        stored.
        """
        if type not in ("click", "order"):
            raise ValidationError.for_field("type", type, "must be 'click' or 'order'")
        if status not in _EVENT_STATUSES:
            raise ValidationError.for_field(
                "status", status, f"must be one of {list(_EVENT_STATUSES)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationError.for_field("value", value, "must be a finite number")
        with self.transaction():
            seq = self._next_seq()
            cur = self._conn.execute(
                "INSERT INTO events (seq, decision_id, event_id, type, value, ts, status) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(decision_id, event_id) DO NOTHING",
                (seq, decision_id, event_id, type, float(value), float(ts), status),
            )
            if cur.rowcount != 1:
                self._seq = seq - 1
                return False
        return True

    def log_learned(self, learned: LearnedReward) -> bool:
        """Record that a decision's window closed and what it learned.

        Returns ``False`` (and stores nothing) when the decision is not pending in the log: it was
        already closed (a replay after a restart learns it again; the first record stands) or it is
        gone (its user was forgotten while it was pending).
        """
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE decisions SET status = ?, reward = ?, closed_at = ?, n_events = ? "
                "WHERE decision_id = ? AND status = 'pending'",
                (
                    learned.status,
                    float(learned.reward),
                    float(learned.closed_at),
                    int(learned.n_events),
                    learned.decision_id,
                ),
            )
            if cur.rowcount != 1:
                return False
            seq = self._next_seq()
            self._conn.execute(
                "INSERT INTO learned (seq, decision_id, bundle_id, reward, status, n_events,"
                " closed_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(decision_id) DO NOTHING",
                (
                    seq,
                    learned.decision_id,
                    learned.bundle_id,
                    float(learned.reward),
                    learned.status,
                    int(learned.n_events),
                    float(learned.closed_at),
                ),
            )
        return True

    def log_admin(self, op: str, payload: Mapping[str, Any], *, ts: float | None = None) -> int:
        """Journal an admin operation (a catalog change) so a replay can redo it in order.

        ``payload`` must be JSON-serializable with finite numbers. Returns its ``seq``.
        """
        if not isinstance(op, str) or not op:
            raise ValidationError.for_field("op", op, "must be a non-empty string")
        try:
            text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValidationError.for_field("payload", op, f"must be finite JSON ({exc})") from None
        with self.transaction():
            seq = self._next_seq()
            self._conn.execute(
                "INSERT INTO admin (seq, ts, op, payload) VALUES (?,?,?,?)",
                (seq, time.time() if ts is None else float(ts), op, text),
            )
        return seq

    # -- profiles ----------------------------------------------------------------------------
    def upsert_profile(
        self,
        user_id: str,
        platform: str,
        fields: Mapping[str, Any],
        *,
        replace: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Update (or with ``replace`` set) a user's fields on one platform; returns the stored
        fields.

        Stored under the user's pseudonym. Values must be JSON scalars or lists with finite numbers.
        """
        if not isinstance(platform, str) or not platform:
            raise ValidationError.for_field("platform", platform, "must be a non-empty string")
        if not isinstance(fields, Mapping):
            raise ValidationError.for_field("fields", fields, "must be a mapping field -> value")
        user = self.pseudonym(user_id)
        with self.transaction():
            row = self._conn.execute(
                "SELECT fields FROM profiles WHERE user = ? AND platform = ?", (user, platform)
            ).fetchone()
            merged: dict[str, Any] = {} if (row is None or replace) else json.loads(row[0])
            merged.update(fields)
            try:
                text = json.dumps(merged, allow_nan=False, separators=(",", ":"), sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise ValidationError.for_field(
                    "fields", dict(fields), f"must be JSON values with finite numbers ({exc})"
                ) from None
            self._conn.execute(
                "INSERT INTO profiles (user, platform, fields, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(user, platform) DO UPDATE SET fields = excluded.fields, "
                "updated_at = excluded.updated_at",
                (user, platform, text, time.time() if now is None else float(now)),
            )
        return merged

    def get_profile(self, user_id: str) -> dict[str, dict[str, Any]] | None:
        """``{platform: fields}`` stored for a user (looked up by pseudonym), or ``None``."""
        user = self.pseudonym(user_id)
        with self._lock:
            rows = self._conn.execute(
                "SELECT platform, fields FROM profiles WHERE user = ?", (user,)
            ).fetchall()
        if not rows:
            return None
        return {str(p): json.loads(f) for p, f in rows}

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete a user's profile and every decision, event and learned row under their pseudonym.

        Returns the number of rows deleted per table. A decision of this user that is still pending
        in a running engine keeps learning in memory, but nothing about it is written back (see
        :meth:`log_learned`); a replay from an older checkpoint will not see it.
        """
        user = self.pseudonym(user_id)
        with self.transaction():
            c = self._conn
            ids = "SELECT decision_id FROM decisions WHERE user = ?"
            n_ev = c.execute(f"DELETE FROM events WHERE decision_id IN ({ids})", (user,)).rowcount
            n_le = c.execute(f"DELETE FROM learned WHERE decision_id IN ({ids})", (user,)).rowcount
            n_de = c.execute("DELETE FROM decisions WHERE user = ?", (user,)).rowcount
            n_pr = c.execute("DELETE FROM profiles WHERE user = ?", (user,)).rowcount
        self._pseudonyms.pop(user_id, None)  # not even the in-memory cache keeps the raw id
        return {"profiles": n_pr, "decisions": n_de, "events": n_ev, "learned": n_le}

    def purge(self, older_than_seconds: float, now: float | None = None) -> dict[str, int]:
        """Delete decisions (with their events and learned rows), events and admin rows older than
        ``now - older_than_seconds``.

        Rows after the seq recorded under ``meta['checkpoint_seq']`` (the latest model checkpoint)
        are kept whatever their age: a restart must still be able to replay them. Profiles are not
        purged (they are current state, not history); :meth:`forget_user` removes them.
        """
        if isinstance(older_than_seconds, bool) or not (
            isinstance(older_than_seconds, int | float)
            and math.isfinite(older_than_seconds)
            and older_than_seconds >= 0
        ):
            raise ValidationError.for_field(
                "older_than_seconds", older_than_seconds, "must be >= 0"
            )
        t = time.time() if now is None else float(now)
        cutoff = t - float(older_than_seconds)
        cp = self.get_meta("checkpoint_seq")
        max_seq = int(cp) if cp is not None else 2**62
        with self.transaction():
            c = self._conn
            old = "SELECT decision_id FROM decisions WHERE ts < ? AND seq <= ?"
            n_ev = c.execute(
                f"DELETE FROM events WHERE (decision_id IN ({old})) OR (ts < ? AND seq <= ?)",
                (cutoff, max_seq, cutoff, max_seq),
            ).rowcount
            n_le = c.execute(
                f"DELETE FROM learned WHERE decision_id IN ({old})", (cutoff, max_seq)
            ).rowcount
            n_de = c.execute(
                "DELETE FROM decisions WHERE ts < ? AND seq <= ?", (cutoff, max_seq)
            ).rowcount
            n_ad = c.execute(
                "DELETE FROM admin WHERE ts < ? AND seq <= ?", (cutoff, max_seq)
            ).rowcount
        return {"decisions": n_de, "events": n_ev, "learned": n_le, "admin": n_ad}

    # -- reading -----------------------------------------------------------------------------
    def has_decision(self, decision_id: str) -> bool:
        """Whether a decision id is in the log."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        return row is not None

    def decision(self, decision_id: str) -> dict[str, Any]:
        """A decision with its events and reward status.

        ``status`` is the learning state (``pending``, ``learned``, ``default``); ``reward_status``
        is the same except ``"late"`` when the window closed with the default reward and events
        arrived only afterwards. The context vector and the user pseudonym are not included.
        Unknown ids raise :class:`~bandit_engine.errors.NotFoundError`.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT decision_id, ts, bundle_id, deal_id, course_id, propensity, candidate_set,"
                " probabilities, scores, policy_version, model_id, status, reward, closed_at,"
                " n_events FROM decisions WHERE decision_id = ?",
                (decision_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError.for_field("decision_id", decision_id, "is not in the event log")
            events = self._conn.execute(
                "SELECT event_id, type, value, ts, status FROM events WHERE decision_id = ? "
                "ORDER BY seq",
                (decision_id,),
            ).fetchall()
            candidates = self._candidates(int(row[6]))
        status = str(row[11])
        # counters are derived from the events (no per-event UPDATE on the hot path)
        n_late = sum(1 for e in events if e[4] == "late")
        n_events = sum(1 for e in events if e[4] == "accepted") if status == "pending" else row[14]
        return {
            "decision_id": row[0],
            "timestamp": row[1],
            "bundle_id": row[2],
            "deal_id": row[3],
            "course_id": row[4],
            "propensity": row[5],
            "candidates": list(candidates),
            "probabilities": None if row[7] is None else _unblob(row[7], None).tolist(),
            "scores": _unblob(row[8], None).tolist(),
            "policy_version": row[9],
            "model_id": row[10],
            "status": status,
            "reward_status": "late" if status == "default" and n_late > 0 else status,
            "reward": row[12],
            "closed_at": row[13],
            "n_events": int(n_events),
            "n_late": n_late,
            "events": [
                {"event_id": e[0], "type": e[1], "value": e[2], "timestamp": e[3], "status": e[4]}
                for e in events
            ],
        }

    def counts(self) -> dict[str, int]:
        """Row counts: decisions by status, events by status, learned rows, profiles."""
        out: dict[str, int] = {}
        with self._lock:
            c = self._conn
            for status, n in c.execute("SELECT status, count(*) FROM decisions GROUP BY status"):
                out[f"decisions_{status}"] = int(n)
            for status, n in c.execute("SELECT status, count(*) FROM events GROUP BY status"):
                out[f"events_{status}"] = int(n)
            out["decisions"] = int(c.execute("SELECT count(*) FROM decisions").fetchone()[0])
            out["events"] = int(c.execute("SELECT count(*) FROM events").fetchone()[0])
            out["learned"] = int(c.execute("SELECT count(*) FROM learned").fetchone()[0])
            out["profiles"] = int(
                c.execute("SELECT count(DISTINCT user) FROM profiles").fetchone()[0]
            )
        return out

    def decisions_frame(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model_id: str | None = None,
    ) -> pd.DataFrame:
        """One row per logged decision (in journal order), for offline evaluation.

        Columns: ``decision_id``, ``timestamp`` (epoch seconds), ``bundle_id`` (the action),
        ``deal_id``, ``course_id``, ``candidates`` (tuple of bundle ids, shared between rows with
        the same list), ``propensity``,
        ``probabilities`` (float64 array aligned with ``candidates``, or ``None`` when the policy does not
        know its full distribution), ``reward`` (NaN while pending), ``status``, ``click``,
        ``order`` (counts of in-window events), ``order_value`` (sum of in-window order values),
        ``n_late``, ``policy_version``, ``model_id``, then the context ``x_0 .. x_{d-1}`` and the
        chosen bundle's features ``z_0 .. z_{p-1}``. :func:`context_matrix` and
        :func:`bundle_matrix` return those blocks as arrays. ``since`` / ``until`` bound
        ``timestamp`` (``since <= t < until``).

        Raises :class:`~bandit_engine.errors.DataError` when the selected decisions have contexts of
        different lengths (several models in one log): filter with ``model_id``.
        """
        where = []
        params: list[Any] = []
        if since is not None:
            where.append("d.ts >= ?")
            params.append(float(since))
        if until is not None:
            where.append("d.ts < ?")
            params.append(float(until))
        if model_id is not None:
            where.append("d.model_id = ?")
            params.append(model_id)
        sql = (
            "SELECT d.decision_id, d.ts, d.bundle_id, d.deal_id, d.course_id, d.candidate_set,"
            " d.propensity, d.probabilities, d.reward, d.status,"
            " coalesce(e.click, 0), coalesce(e.n_order, 0), coalesce(e.order_value, 0.0),"
            " coalesce(e.n_late, 0), d.policy_version, d.model_id, d.x, d.x_dim, d.z, d.z_dim"
            " FROM decisions d LEFT JOIN ("
            "  SELECT decision_id,"
            "   sum(status = 'accepted' AND type = 'click') AS click,"
            "   sum(status = 'accepted' AND type = 'order') AS n_order,"
            "   sum(CASE WHEN status = 'accepted' AND type = 'order' THEN value ELSE 0.0 END)"
            "    AS order_value,"
            "   sum(status = 'late') AS n_late"
            "  FROM events GROUP BY decision_id"
            " ) e ON e.decision_id = d.decision_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY d.seq"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
            sets = {
                int(i): tuple(json.loads(t))
                for i, t in self._conn.execute("SELECT id, ids FROM candidate_sets")
            }
        names = [
            "decision_id",
            "timestamp",
            "bundle_id",
            "deal_id",
            "course_id",
            "candidates",
            "propensity",
            "probabilities",
            "reward",
            "status",
            "click",
            "order",
            "order_value",
            "n_late",
            "policy_version",
            "model_id",
        ]
        x_dims = {int(r[17]) for r in rows}
        z_dims = {int(r[19]) for r in rows if r[19] is not None}
        if len(x_dims) > 1 or len(z_dims) > 1:
            raise DataError.for_field(
                "x_dim", sorted(x_dims), "differs between decisions (several models): pass model_id"
            )
        d = x_dims.pop() if x_dims else 0
        p = z_dims.pop() if z_dims else 0
        n = len(rows)
        X = np.empty((n, d))
        Z = np.empty((n, p))
        cols: dict[str, list[Any]] = {name: [] for name in names}
        for i, r in enumerate(rows):
            X[i] = _unblob(r[16], d)
            if p:
                Z[i] = _unblob(r[18], p)
            for j, name in enumerate(names):
                v = r[j]
                if name == "candidates":
                    v = sets[v]
                elif name == "probabilities":
                    v = None if v is None else _unblob(v, None)
                cols[name].append(v)
        frame = pd.DataFrame(
            {
                **{name: cols[name] for name in names},
            }
        )
        frame["timestamp"] = frame["timestamp"].astype(np.float64)
        frame["propensity"] = frame["propensity"].astype(np.float64)
        frame["reward"] = pd.to_numeric(frame["reward"], errors="coerce").astype(np.float64)
        for name in ("click", "order", "n_late"):
            frame[name] = frame[name].astype(np.int64)
        frame["order_value"] = frame["order_value"].astype(np.float64)
        blocks = [
            pd.DataFrame(X, columns=[f"x_{i}" for i in range(d)]),
            pd.DataFrame(Z, columns=[f"z_{i}" for i in range(p)]),
        ]
        return pd.concat([frame, *blocks], axis=1)

    def entries_since(self, seq: int) -> Iterator[JournalEntry]:
        """Journal entries with ``seq`` greater than the given one, in seq (commit) order."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValidationError.for_field("seq", seq, "must be an integer >= 0")
        with self._lock:
            c = self._conn
            decisions = c.execute(
                "SELECT seq, decision_id, ts, user, bundle_id, candidate_set, propensity,"
                " policy_version, model_id, x, x_dim FROM decisions WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
            events = c.execute(
                "SELECT seq, decision_id, event_id, type, value, ts, status FROM events"
                " WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
            learned = c.execute(
                "SELECT seq, decision_id, bundle_id, reward, status, n_events, closed_at"
                " FROM learned WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
            admin = c.execute(
                "SELECT seq, ts, op, payload FROM admin WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()

        def dec(r: Sequence[Any]) -> JournalEntry:
            return JournalEntry(
                int(r[0]),
                "decision",
                {
                    "decision_id": r[1],
                    "timestamp": r[2],
                    "user": r[3],
                    "bundle_id": r[4],
                    "candidates": list(self._candidates(int(r[5]))),
                    "propensity": r[6],
                    "policy_version": r[7],
                    "model_id": r[8],
                    "x": _unblob(r[9], int(r[10])),
                },
            )

        def ev(r: Sequence[Any]) -> JournalEntry:
            keys = ("decision_id", "event_id", "type", "value", "timestamp", "status")
            return JournalEntry(int(r[0]), "event", dict(zip(keys, r[1:], strict=True)))

        def le(r: Sequence[Any]) -> JournalEntry:
            keys = ("decision_id", "bundle_id", "reward", "status", "n_events", "closed_at")
            return JournalEntry(int(r[0]), "learned", dict(zip(keys, r[1:], strict=True)))

        def ad(r: Sequence[Any]) -> JournalEntry:
            return JournalEntry(
                int(r[0]), "admin", {"timestamp": r[1], "op": r[2], "payload": json.loads(r[3])}
            )

        yield from heapq.merge(
            (dec(r) for r in decisions),
            (ev(r) for r in events),
            (le(r) for r in learned),
            (ad(r) for r in admin),
            key=lambda e: e.seq,
        )


def context_matrix(frame: pd.DataFrame) -> FloatArray:
    """The ``(n, d)`` context block ``x_0 .. x_{d-1}`` of :meth:`EventLog.decisions_frame`."""
    return _block(frame, "x_")


def bundle_matrix(frame: pd.DataFrame) -> FloatArray:
    """The ``(n, p)`` chosen-bundle features ``z_0 .. z_{p-1}`` of
    :meth:`EventLog.decisions_frame`."""
    return _block(frame, "z_")


def _block(frame: pd.DataFrame, prefix: str) -> FloatArray:
    cols = []
    i = 0
    while f"{prefix}{i}" in frame.columns:
        cols.append(f"{prefix}{i}")
        i += 1
    if not cols:
        raise DataError.for_field(
            "frame", sorted(map(str, frame.columns))[:10], f"has no {prefix}0.. columns"
        )
    return frame[cols].to_numpy(dtype=np.float64)
