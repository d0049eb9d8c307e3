"""The event log: decisions, events, learned rewards, catalog changes and profiles in SQLite.

This is the only package of the project that speaks SQL. The simulator logs its decisions here, the
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
the ``seq`` it covers) and rolls the journal forward from it (:mod:`bandit_engine.service`). The journal assumes **one engine per
database**: two server processes writing to one file are safe for SQLite (each transaction is
atomic, ``busy_timeout`` makes writers wait instead of failing) but their interleaved journal cannot
be replayed into one engine.

Layout
------
:mod:`~bandit_engine.store.keys` (the pseudonym key), :mod:`~bandit_engine.store.schema` (tables,
version, migrations), :mod:`~bandit_engine.store.connection` (opening, the one transaction path,
the journal sequence, ``meta``), :mod:`~bandit_engine.store.writes`,
:mod:`~bandit_engine.store.reads`, :mod:`~bandit_engine.store.retention` (forget, purge),
:mod:`~bandit_engine.store.frames` (pandas at the edge) and :mod:`~bandit_engine.store.log`, whose
:class:`EventLog` has all of their methods. A second backend implements the same public methods.

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
