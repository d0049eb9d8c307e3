"""The SQLite event log: the shared methods of the log over one SQLite connection."""

from __future__ import annotations

from .columns import LogColumns
from .frames import LogFrames
from .profile_bulk import LogProfileBulk
from .reads import LogReads
from .retention import LogRetention
from .sqlite import SQLiteConnection
from .versions import LogVersions
from .writes import LogWrites

__all__ = ["EventLog"]


class EventLog(
    LogWrites,
    LogReads,
    LogRetention,
    LogFrames,
    LogColumns,
    LogProfileBulk,
    LogVersions,
    SQLiteConnection,
):
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
