"""Reading: profiles, one decision with its events, counts and the journal in commit order."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import DataError, NotFoundError, ValidationError
from ..profiles import CONSENT
from .connection import LogConnection
from .crypto import open_text, open_vector, profile_aad, x_aad
from .rows import JournalEntry, unblob

__all__ = ["LogReads"]


class LogReads(LogConnection):
    """The reading methods of :class:`~bandit_engine.store.EventLog`."""

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

    def get_profile(self, user_id: str) -> dict[str, dict[str, Any]] | None:
        """``{platform: fields}`` stored for a user (looked up by pseudonym), or ``None``."""
        pseudonym = self.pseudonym(user_id)
        user = self._profile_key(pseudonym)
        with self._lock:
            rows = self._conn.execute(
                'SELECT platform, fields FROM profiles WHERE "user" = ?', (user,)
            ).fetchall()
        if not rows:
            return None
        return {
            str(p): json.loads(
                open_text(self._cipher, f, profile_aad(pseudonym, str(p)), "profiles.fields")
            )
            for p, f in rows
        }

    def decision_ids_of(self, user_id: str) -> list[str]:
        """The ids of every logged decision of a user (looked up by pseudonym)."""
        user = self._stored_user(self.pseudonym(user_id))
        with self._lock:
            rows = self._conn.execute(
                'SELECT decision_id FROM decisions WHERE "user" = ? ORDER BY seq', (user,)
            ).fetchall()
        return [str(r[0]) for r in rows]

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
                " n_events, grp FROM decisions WHERE decision_id = ?",
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
            "probabilities": None if row[7] is None else unblob(row[7], None).tolist(),
            "scores": unblob(row[8], None).tolist(),
            "policy_version": row[9],
            "model_id": row[10],
            "status": status,
            "reward_status": "late" if status == "default" and n_late > 0 else status,
            "reward": row[12],
            "closed_at": row[13],
            "n_events": int(n_events),
            "n_late": n_late,
            "group": row[15],
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
                c.execute(
                    'SELECT count(DISTINCT "user") FROM profiles WHERE platform <> ?', (CONSENT,)
                ).fetchone()[0]
            )
        return out

    def entries_since(self, seq: int) -> Iterator[JournalEntry]:
        """Journal entries with ``seq`` greater than the given one, in seq (commit) order."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValidationError.for_field("seq", seq, "must be an integer >= 0")
        with self._lock:
            c = self._conn
            decisions = c.execute(
                'SELECT seq, decision_id, ts, "user", bundle_id, candidate_set, propensity,'
                " policy_version, model_id, x, x_dim, grp FROM decisions WHERE seq > ? ORDER BY seq",
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
                    "user": self._user_text(r[3]),
                    "bundle_id": r[4],
                    "candidates": list(self._candidates(int(r[5]))),
                    "propensity": r[6],
                    "policy_version": r[7],
                    "model_id": r[8],
                    "x": unblob(
                        open_vector(self._cipher, r[9], int(r[10]), x_aad(r[1])), int(r[10])
                    ),
                    "group": r[11],
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
