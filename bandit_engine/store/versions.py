"""Model versions, the learner's lease row and the reads the split roles need.

:class:`LogVersions` is a mixin of both event logs (SQLite and PostgreSQL run the same SQL, as the
other mixins do). The learner publishes a version with :meth:`~LogVersions.publish_version` (in a
transaction that also checks its lease), decision servers poll :meth:`~LogVersions.latest_version`
and load :meth:`~LogVersions.version_state`; :meth:`~LogVersions.tail` and
:meth:`~LogVersions.pending_as_of` are how a learner reads the journal, and
:meth:`~LogVersions.decision_window` is how a decision server classifies an event without holding
the decision in memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from .connection import LogConnection
from .crypto import open_vector, x_aad
from .rows import JournalEntry, unblob

__all__ = ["LeaseRow", "LogVersions", "VersionInfo"]


@dataclass(frozen=True)
class VersionInfo:
    """A published model version (without its state bytes)."""

    version: int
    created_at: float
    log_seq: int
    model_id: str
    policy_version: str
    n_learned: int
    learner: str


@dataclass(frozen=True)
class LeaseRow:
    """The learner lease as stored: who holds it, until when (SQLite), how often it changed hands,
    and the journal position the learner has consumed."""

    holder: str | None
    epoch: int
    acquired_at: float | None
    expires_at: float | None
    position: int


_DECISION_COLS = (
    'seq, decision_id, ts, "user", bundle_id, propensity, policy_version, model_id,'
    " x, x_dim, z, z_dim, grp"
)
# the decision's mode and, in apprentice mode, the learner's probability of the served bundle
# (decision_modes is written in the decision's own transaction, so a tailed decision has its row)
_DECISION_FROM = "decisions d LEFT JOIN decision_modes m ON m.decision_id = d.decision_id"
# (and the number of candidates, from the scores blob: one float64 per candidate)
_DECISION_SELECT = ", ".join(f"d.{c.strip()}" for c in _DECISION_COLS.split(",")) + (
    ", m.mode, m.target_p, length(d.scores) / 8"
)


class LogVersions(LogConnection):
    """Model versions and the learner's reads (a mixin of both event logs)."""

    # -- versions ----------------------------------------------------------------------------
    def publish_version(
        self,
        state: bytes,
        *,
        log_seq: int,
        model_id: str,
        policy_version: str,
        n_learned: int,
        learner: str,
        keep: int = 5,
        now: float | None = None,
    ) -> int:
        """Store a new model version (the next integer) and delete all but the ``keep`` newest.

        Runs in the caller's transaction when one is open (the learner's, which checks its lease in
        the same transaction), so versions strictly increase whoever publishes them."""
        if keep < 1:
            raise ValidationError.for_field("keep", keep, "must be >= 1")
        with self.transaction():
            c = self._conn
            top = int(
                c.execute("SELECT COALESCE(MAX(version), 0) FROM model_versions").fetchone()[0]
            )
            version = top + 1
            c.execute(
                "INSERT INTO model_versions (version, created_at, log_seq, model_id,"
                " policy_version, n_learned, learner, state) VALUES (?,?,?,?,?,?,?,?)",
                (
                    version,
                    time.time() if now is None else float(now),
                    int(log_seq),
                    model_id,
                    policy_version,
                    int(n_learned),
                    learner,
                    state,
                ),
            )
            c.execute("DELETE FROM model_versions WHERE version <= ?", (version - keep,))
        return version

    def latest_version(self) -> VersionInfo | None:
        """The newest published version, or ``None`` before the first."""
        with self._lock:
            row = self._conn.execute(
                "SELECT version, created_at, log_seq, model_id, policy_version, n_learned, learner"
                " FROM model_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return VersionInfo(
            int(row[0]), float(row[1]), int(row[2]), str(row[3]), str(row[4]), int(row[5]), row[6]
        )

    def version_state(self, version: int) -> bytes | None:
        """The state bytes of a version (``None`` when it was pruned meanwhile)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM model_versions WHERE version = ?", (int(version),)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first (without states)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT version, created_at, log_seq, model_id, policy_version, n_learned, learner"
                " FROM model_versions ORDER BY version"
            ).fetchall()
        return [
            VersionInfo(int(r[0]), float(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), r[6])
            for r in rows
        ]

    # -- the lease row -----------------------------------------------------------------------
    def lease_row(self) -> LeaseRow:
        """The learner lease as stored."""
        with self._lock:
            row = self._conn.execute(
                "SELECT holder, epoch, acquired_at, expires_at, position FROM learner_lease"
                " WHERE id = 0"
            ).fetchone()
        return LeaseRow(
            None if row[0] is None else str(row[0]),
            int(row[1]),
            None if row[2] is None else float(row[2]),
            None if row[3] is None else float(row[3]),
            int(row[4]),
        )

    def lease_take(self, holder: str, *, now: float, ttl: float, force: bool = False) -> bool:
        """Take the lease when it is free, expired or ours (``force``: whatever its state, for a
        backend whose own lock already decided). Returns whether ``holder`` now holds it."""
        with self.transaction():
            if force:
                cur = self._conn.execute(
                    "UPDATE learner_lease SET holder = ?, epoch = epoch + 1, acquired_at = ?,"
                    " expires_at = ? WHERE id = 0",
                    (holder, now, now + ttl),
                )
            else:
                cur = self._conn.execute(
                    "UPDATE learner_lease SET holder = ?, epoch = epoch + 1, acquired_at = ?,"
                    " expires_at = ? WHERE id = 0 AND (holder IS NULL OR holder = ?"
                    " OR expires_at < ?)",
                    (holder, now, now + ttl, holder, now),
                )
            return cur.rowcount == 1

    def lease_renew(self, holder: str, *, now: float, ttl: float, position: int | None) -> bool:
        """Extend ``holder``'s lease (and record its position); ``False`` when it is not the
        holder any more. Call it inside the transaction whose writes it fences."""
        with self.transaction():
            if position is None:
                cur = self._conn.execute(
                    "UPDATE learner_lease SET expires_at = ? WHERE id = 0 AND holder = ?",
                    (now + ttl, holder),
                )
            else:
                cur = self._conn.execute(
                    "UPDATE learner_lease SET expires_at = ?, position = ? WHERE id = 0"
                    " AND holder = ?",
                    (now + ttl, int(position), holder),
                )
            return cur.rowcount == 1

    def lease_release(self, holder: str) -> None:
        """Give the lease up (a clean stop): the next learner need not wait for it to expire."""
        with self.transaction():
            self._conn.execute(
                "UPDATE learner_lease SET holder = NULL, expires_at = NULL WHERE id = 0"
                " AND holder = ?",
                (holder,),
            )

    # -- what the roles read -----------------------------------------------------------------
    def decision_window(self, decision_id: str) -> tuple[float, str, str] | None:
        """``(timestamp, status, model_id)`` of a logged decision, or ``None``: what a decision
        server needs to classify an event for a decision another process made."""
        with self._lock:
            row = self._conn.execute(
                "SELECT ts, status, model_id FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        return None if row is None else (float(row[0]), str(row[1]), str(row[2]))

    def has_event(self, decision_id: str, event_id: str) -> bool:
        """Whether the log holds this event id for this decision (a decision server's duplicate
        check before it queues the write)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM events WHERE decision_id = ? AND event_id = ?",
                (decision_id, event_id),
            ).fetchone()
        return row is not None

    def _decision_entry(self, r: Sequence[Any]) -> JournalEntry:
        return JournalEntry(
            int(r[0]),
            "decision",
            {
                "decision_id": r[1],
                "timestamp": float(r[2]),
                "user": self._user_text(r[3]),
                "bundle_id": r[4],
                "propensity": float(r[5]),
                "policy_version": r[6],
                "model_id": r[7],
                # a sealed context (issue 15's encryption at rest) is opened with the log's key
                "x": unblob(
                    open_vector(self._cipher, r[8], int(r[9]), x_aad(str(r[1]))), int(r[9])
                ),
                "z": unblob(r[10], None if r[11] is None else int(r[11])),
                "group": r[12],  # the holdout group whose policy learns this decision
                "mode": r[13],  # None, a fallback, "apprentice:rule" / "apprentice:policy"
                "target_p": None if r[14] is None else float(r[14]),
                "n_candidates": int(r[15]),
            },
        )

    def tail(self, since: int, until: int) -> list[JournalEntry]:
        """Journal entries with ``since < seq <= until`` in seq order, decisions with their
        ``x``, ``z`` and pseudonym (what a learner needs; candidate lists are left out)."""
        import json

        with self._lock:
            c = self._conn
            dec = c.execute(
                f"SELECT {_DECISION_SELECT} FROM {_DECISION_FROM} WHERE d.seq > ? AND d.seq <= ?"
                " ORDER BY d.seq",
                (since, until),
            ).fetchall()
            ev = c.execute(
                "SELECT seq, decision_id, event_id, type, value, ts, status FROM events"
                " WHERE seq > ? AND seq <= ? ORDER BY seq",
                (since, until),
            ).fetchall()
            le = c.execute(
                "SELECT seq, decision_id, bundle_id, reward, status, n_events, closed_at"
                " FROM learned WHERE seq > ? AND seq <= ? ORDER BY seq",
                (since, until),
            ).fetchall()
            ad = c.execute(
                "SELECT seq, ts, op, payload FROM admin WHERE seq > ? AND seq <= ? ORDER BY seq",
                (since, until),
            ).fetchall()
        out = [self._decision_entry(r) for r in dec]
        ev_keys = ("decision_id", "event_id", "type", "value", "timestamp", "status")
        le_keys = ("decision_id", "bundle_id", "reward", "status", "n_events", "closed_at")
        out += [
            JournalEntry(int(r[0]), "event", dict(zip(ev_keys, r[1:], strict=True))) for r in ev
        ]
        out += [
            JournalEntry(int(r[0]), "learned", dict(zip(le_keys, r[1:], strict=True))) for r in le
        ]
        out += [
            JournalEntry(
                int(r[0]), "admin", {"timestamp": r[1], "op": r[2], "payload": json.loads(r[3])}
            )
            for r in ad
        ]
        out.sort(key=lambda e: e.seq)
        return out

    def pending_as_of(
        self, seq: int, model_id: str
    ) -> tuple[list[JournalEntry], list[JournalEntry]]:
        """The decisions of lineage ``model_id`` that were pending at journal position ``seq``
        (logged up to it, and not learned up to it) and their events logged up to it, each in seq
        order: what a learner that takes over from a version covering ``seq`` rebuilds its pending
        set from."""
        where = (
            "d.seq <= ? AND d.model_id = ? AND (d.status = 'pending' OR d.decision_id IN"
            " (SELECT decision_id FROM learned WHERE seq > ?))"
        )
        with self._lock:
            c = self._conn
            dec = c.execute(
                f"SELECT {_DECISION_SELECT} FROM {_DECISION_FROM} WHERE {where} ORDER BY d.seq",
                (seq, model_id, seq),
            ).fetchall()
            ev = c.execute(
                "SELECT e.seq, e.decision_id, e.event_id, e.type, e.value, e.ts, e.status"
                f" FROM events e JOIN decisions d ON d.decision_id = e.decision_id WHERE {where}"
                " AND e.seq <= ? ORDER BY e.seq",
                (seq, model_id, seq, seq),
            ).fetchall()
        ev_keys = ("decision_id", "event_id", "type", "value", "timestamp", "status")
        return (
            [self._decision_entry(r) for r in dec],
            [JournalEntry(int(r[0]), "event", dict(zip(ev_keys, r[1:], strict=True))) for r in ev],
        )
