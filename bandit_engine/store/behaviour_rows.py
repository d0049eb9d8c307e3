"""The shared live-behaviour rows in the event log (both backends, the same SQL).

Tables (schema step 6, :mod:`~bandit_engine.store.behaviour_schema`): ``user_behaviour`` (one row
per user key: the learner's current live-behaviour row) and ``behaviour_forgets`` (forgotten keys
the learner has not yet dropped from memory). The learner writes rows with
:meth:`~LogBehaviourRows.put_behaviour` inside its fenced write transaction; a decision server
reads one with :meth:`~LogBehaviourRows.behaviour_of` (one primary-key lookup) before it decides
for the user. A row is opaque bytes here (its layout is
:meth:`~bandit_engine.features.behaviour.BehaviourStore.export_row`'s); with encryption at rest it
is sealed under the user's key as associated data, like a profile.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ..errors import DataError
from .connection import LogConnection
from .crypto import ENV_KEY, OVERHEAD

__all__ = ["LogBehaviourRows"]


def _aad(key_hex: str) -> bytes:
    return b"behaviour\x00" + key_hex.encode("ascii")


class LogBehaviourRows(LogConnection):
    """Shared behaviour rows (a mixin of both backends' log classes); keys are the 12-byte
    behaviour keys as 24 hex characters."""

    def put_behaviour(self, rows: Iterable[tuple[str, int, bytes]], *, seq: int) -> int:
        """Insert or replace ``(key hex, width, row bytes)`` rows, stamped with journal position
        ``seq``; in the caller's transaction when one is open. Returns how many. The bytes are
        ``width`` float32 values then three float64 times, the first the row's last update."""
        cipher = self._cipher
        params = [
            (
                self._stored_user(k),
                int(w),
                data if cipher is None else cipher.seal(data, _aad(k)),
                struct.unpack_from("<d", data, 4 * int(w))[0],
                int(seq),
            )
            for k, w, data in rows
        ]
        if not params:
            return 0
        with self.transaction():
            c = self._conn
            for p in params:
                c.execute(
                    'INSERT INTO user_behaviour ("user", width, state, ts, seq)'
                    ' VALUES (?, ?, ?, ?, ?) ON CONFLICT ("user") DO UPDATE SET'
                    " width = excluded.width, state = excluded.state, ts = excluded.ts,"
                    " seq = excluded.seq",
                    p,
                )
        return len(params)

    def behaviour_of(self, key_hex: str) -> tuple[int, bytes] | None:
        """``(width, row bytes)`` of one user key, or ``None`` when the log holds no row."""
        with self._lock:
            row = self._conn.execute(
                'SELECT width, state FROM user_behaviour WHERE "user" = ?',
                (self._stored_user(key_hex),),
            ).fetchone()
        if row is None:
            return None
        width, state = int(row[0]), bytes(row[1])
        if len(state) == 4 * width + 24:  # plaintext: the row's floats and its three times
            return width, state
        if len(state) != 4 * width + 24 + OVERHEAD:
            raise DataError.for_field("user_behaviour.state", len(state), "has a wrong length")
        if self._cipher is None:
            raise DataError(
                f"user_behaviour is encrypted in the event log: set {ENV_KEY} to read it",
                field=ENV_KEY,
            )
        return width, self._cipher.open(state, _aad(key_hex), "user_behaviour.state")

    def behaviour_count(self) -> int:
        """How many users have a shared behaviour row."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM user_behaviour").fetchone()[0])

    def forget_behaviour_rows(self, key_hex: str, *, notify_learner: bool) -> int:
        """Delete a user's shared row (in the caller's transaction when one is open); with
        ``notify_learner`` also queue the key for the learner, which drops its in-memory copy at
        its next step. Returns the rows deleted."""
        user = self._stored_user(key_hex)
        with self.transaction():
            c = self._conn
            n = c.execute('DELETE FROM user_behaviour WHERE "user" = ?', (user,)).rowcount
            if notify_learner:
                c.execute(
                    'INSERT INTO behaviour_forgets ("user") VALUES (?) ON CONFLICT ("user")'
                    " DO NOTHING",
                    (user,),
                )
        return int(n)

    def take_behaviour_forgets(self) -> list[str]:
        """The queued forgotten keys (hex), deleted from the queue: call it in the transaction
        that also drops them from the learner's memory and from ``user_behaviour``."""
        with self.transaction():
            c = self._conn
            keys = [
                str(self._user_text(r[0]))
                for r in c.execute('SELECT "user" FROM behaviour_forgets').fetchall()
            ]
            if keys:
                c.execute("DELETE FROM behaviour_forgets")
                for k in keys:
                    c.execute(
                        'DELETE FROM user_behaviour WHERE "user" = ?', (self._stored_user(k),)
                    )
        return keys

    def has_behaviour_forgets(self) -> bool:
        """Whether forgotten keys wait for the learner (a cheap check before a write)."""
        with self._lock:
            return (
                self._conn.execute("SELECT 1 FROM behaviour_forgets LIMIT 1").fetchone() is not None
            )
