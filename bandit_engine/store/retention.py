"""Retention: forgetting a user and purging old rows."""

from __future__ import annotations

import math
import time

from ..errors import ValidationError
from .behaviour_rows import LogBehaviourRows
from .rule_rows import LogRuleRows

__all__ = ["LogRetention"]

_KEY_HEX = 24  # the live-behaviour key: the first 12 bytes of the pseudonym (features/behaviour)


class LogRetention(LogRuleRows, LogBehaviourRows):
    """The deleting methods of :class:`~bandit_engine.store.EventLog`."""

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete a user's profile (consent record included), their consent log, their shared
        live-behaviour row and every decision, event and learned row under their pseudonym.

        Returns the number of rows deleted per table. A decision of this user that is still pending
        in a running engine keeps learning in memory, but nothing about it is written back (see
        :meth:`log_learned`); a replay from an older checkpoint will not see it. In a log a
        learner has served (split roles), the user's behaviour key is also queued for the learner,
        which drops its in-memory row at its next step (:mod:`~bandit_engine.store.behaviour_rows`).
        """
        pseudonym = self.pseudonym(user_id)
        user = self._stored_user(pseudonym)
        with self.transaction():
            c = self._conn
            served = c.execute("SELECT epoch FROM learner_lease WHERE id = 0").fetchone()
            n_be = self.forget_behaviour_rows(
                pseudonym[:_KEY_HEX], notify_learner=served is not None and int(served[0]) > 0
            )
            ids = 'SELECT decision_id FROM decisions WHERE "user" = ?'
            rule_rows = self.forget_rule_rows(user)
            n_ev = c.execute(f"DELETE FROM events WHERE decision_id IN ({ids})", (user,)).rowcount
            n_le = c.execute(f"DELETE FROM learned WHERE decision_id IN ({ids})", (user,)).rowcount
            n_de = c.execute('DELETE FROM decisions WHERE "user" = ?', (user,)).rowcount
            key = self._profile_key(self.pseudonym(user_id))
            n_pr = c.execute('DELETE FROM profiles WHERE "user" = ?', (key,)).rowcount
            # the consent log goes too: erasure leaves nothing under the pseudonym (no consent
            # is needed to process a user there is no data about)
            n_co = c.execute('DELETE FROM consent_log WHERE "user" = ?', (key,)).rowcount
        self._pseudonyms.pop(user_id, None)  # not even the in-memory cache keeps the raw id
        return {
            "profiles": n_pr,
            "decisions": n_de,
            "events": n_ev,
            "learned": n_le,
            "behaviour": n_be,
            "consent_log": n_co,
            **rule_rows,
        }

    def purge(
        self,
        older_than_seconds: float,
        now: float | None = None,
        *,
        keep_after: int | None = None,
    ) -> dict[str, int]:
        """Delete decisions (with their events and learned rows), events and admin rows older than
        ``now - older_than_seconds``.

        Journal entries a restart may still need are kept whatever their age: those after
        ``keep_after`` (the seq of the *oldest* checkpoint that loads, so that falling back to it
        still finds every entry after it); without ``keep_after``, those after the latest
        checkpoint recorded in ``meta``, or, in a server's log with no checkpoint at all, every
        entry of the served lineage. The highest seq deleted is recorded (``meta['purged_seq']``)
        so that a restart from an older checkpoint can tell that it would lose learning. Profiles
        are not purged (they are current state, not history); :meth:`forget_user` removes them.
        Shared live-behaviour rows (split roles) not updated since the cutoff are deleted: the
        user was not seen since, and what is left of their decayed counts is history.
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
        if keep_after is not None:
            max_seq = int(keep_after)
        elif (cp := self.get_meta("checkpoint_seq")) is not None:
            max_seq = int(cp)
        elif self.get_meta("engine_model_id") is not None:  # a server's lineage, no checkpoint
            max_seq = int(self.get_meta("engine_base_seq") or 0)
        else:  # not a server's log: no restart depends on it
            max_seq = 2**62
        with self.transaction():
            c = self._conn
            highest = max(
                int(
                    c.execute(
                        f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE ts < ? AND seq <= ?",
                        (cutoff, max_seq),
                    ).fetchone()[0]
                )
                for table in ("decisions", "events", "admin")
            )
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
            n_be = c.execute("DELETE FROM user_behaviour WHERE ts < ?", (cutoff,)).rowcount
            before = int(self.get_meta("purged_seq") or 0)
            if highest > before:
                self.set_meta("purged_seq", str(highest))
        return {
            "decisions": n_de,
            "events": n_ev,
            "learned": n_le,
            "admin": n_ad,
            "behaviour": n_be,
        }
