"""Retention: forgetting a user and purging old rows."""

from __future__ import annotations

import math
import time

from ..errors import ValidationError
from .connection import LogConnection

__all__ = ["LogRetention"]


class LogRetention(LogConnection):
    """The deleting methods of :class:`~bandit_engine.store.EventLog`."""

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
