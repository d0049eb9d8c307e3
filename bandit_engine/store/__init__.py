"""The event log: decisions, events, learned rewards, catalog changes and profiles, in SQLite (the
embedded default) or PostgreSQL (one log shared by many machines).

This is the only package of the project that speaks SQL. The simulator logs its decisions here, the
HTTP server commits every decision and event here before it answers, and ``bandit evaluate`` reads
it back with :meth:`EventLog.decisions_frame`.

Backends
--------
:func:`open_log` is the one place that picks the database, from the ``--db`` value: a
``postgresql://`` or ``postgres://`` URL opens
:class:`~bandit_engine.store.postgres.PostgresEventLog` (psycopg 3 and a connection pool; the
``postgres`` extra), any other value is the path of a SQLite :class:`EventLog`. Both have the same
tables and columns, the same schema versions, the same methods (the :class:`EventStore` protocol,
which the layers above are typed against) and run the same SQL for them; they differ in how they
open, lock the journal, store a pseudonym (hex text / 32 bytes) and make a commit durable (below,
and :mod:`~bandit_engine.store.postgres`). URLs appear in messages only through :func:`redact`,
which hides a password.

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
the ``seq`` it covers) and rolls the journal forward from it (:mod:`bandit_engine.service`). The
journal assumes **one engine per database** (per PostgreSQL schema): several server processes
writing to one log are safe on both backends (each transaction is atomic and takes the journal
first, ``busy_timeout`` makes writers wait instead of failing) but their interleaved journal cannot
be replayed into one engine.

Layout
------
:mod:`~bandit_engine.store.keys` (the pseudonym key), :mod:`~bandit_engine.store.target` (what
a ``--db`` value names, :func:`redact`), :mod:`~bandit_engine.store.connection` (the
backend-neutral base: the one transaction path, the journal sequence, ``meta``),
:mod:`~bandit_engine.store.writes`, :mod:`~bandit_engine.store.reads`,
:mod:`~bandit_engine.store.retention` (forget, purge), :mod:`~bandit_engine.store.frames` (pandas at
the edge): the shared methods. SQLite: :mod:`~bandit_engine.store.schema` (tables, version,
migrations), :mod:`~bandit_engine.store.sqlite` (opening, WAL, ``BEGIN IMMEDIATE``) and
:mod:`~bandit_engine.store.log`, whose :class:`EventLog` has all the methods. PostgreSQL:
:mod:`~bandit_engine.store.pg_schema` and :mod:`~bandit_engine.store.postgres`
(``PostgresEventLog``). :mod:`~bandit_engine.store.protocol` (:class:`EventStore`) and
:mod:`~bandit_engine.store.factory` (:func:`open_log`) sit on top.

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

Durability (PostgreSQL)
-----------------------
A transaction is acknowledged only after PostgreSQL's ``COMMIT`` has returned, so it survives a
crash of the process that wrote it (kill -9) in every mode: it is in the server's hands. What a
crash of the PostgreSQL server (or of its machine) keeps depends on ``synchronous_commit``, which
``synchronous`` sets per session (sources: https://www.postgresql.org/docs/current/wal-async-commit.html
and https://www.postgresql.org/docs/current/runtime-config-wal.html):

===========  ============================  ====================================================
synchronous  synchronous_commit            PostgreSQL crash or power loss
===========  ============================  ====================================================
``FULL``     ``on``                        every committed transaction kept: its WAL was
                                           flushed before ``COMMIT`` returned (with ``fsync``
                                           on and a disk that honours it)
``NORMAL``   the server's setting          as the server is configured: ``on`` (the default)
                                           keeps everything; ``off`` as below
``OFF``      ``off``                       the database stays consistent, but commits of the
                                           last moments (up to three ``wal_writer_delay``,
                                           600 ms by default) may be lost
===========  ============================  ====================================================

Neither covers the loss of the PostgreSQL machine's disk: that takes a standby with
``synchronous_standby_names`` (then ``on`` waits for it too), which is the database
administrator's choice, not the log's.
"""

from .connection import Synchronous
from .factory import open_log
from .frames import bundle_matrix, context_matrix
from .keys import load_hmac_key
from .log import EventLog
from .protocol import EventStore
from .rows import JournalEntry
from .schema import SCHEMA_VERSION
from .target import is_url, redact

__all__ = [
    "SCHEMA_VERSION",
    "EventLog",
    "EventStore",
    "JournalEntry",
    "Synchronous",
    "bundle_matrix",
    "context_matrix",
    "is_url",
    "load_hmac_key",
    "open_log",
    "redact",
]
