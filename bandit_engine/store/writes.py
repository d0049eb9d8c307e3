"""Writing: decisions, events, learned rewards, catalog changes and profiles, each in the journal."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..profiles import CONSENT
from ..records import Decision, LearnedReward
from .consent import LogConsent
from .crypto import open_text, profile_aad, seal_text, seal_vector, x_aad
from .rows import FloatArray, blob, vector

__all__ = ["LogWrites"]

_EVENT_STATUSES = ("accepted", "duplicate", "late")
_INSERT_DECISION = (
    'INSERT INTO decisions (seq, decision_id, ts, "user", bundle_id, deal_id,'
    " course_id, propensity, candidate_set, probabilities, scores, policy_version,"
    " model_id, x, x_dim, z, z_dim, grp, presence, city)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_EVENT = (
    "INSERT INTO events (seq, decision_id, event_id, type, value, ts, status) "
    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(decision_id, event_id) DO NOTHING"
)


class LogWrites(LogConsent):
    """The writing methods of :class:`~bandit_engine.store.EventLog`."""

    def log_decision(
        self,
        decision: Decision,
        *,
        user_id: str | None,
        x: FloatArray,
        z: FloatArray,
        model_id: str,
        wait: bool = True,
    ) -> int:
        """Store a pending decision with its context ``x`` and the chosen bundle's features ``z``.

        Returns its journal ``seq``. A reused ``decision_id`` raises
        :class:`~bandit_engine.errors.ValidationError` naming it. With ``wait=False`` a backend
        that pipelines (PostgreSQL) sends the row inside the open transaction without waiting for
        the server (no round trip of its own): a reused id then fails the whole transaction, at
        its next round trip or at commit, with :class:`~bandit_engine.errors.StoreBusyError`
        (nothing of it committed). For a caller that checked the id inside the same transaction
        (the journal lock keeps other writers out) or made it up. SQLite behaves as ``wait=True``.
        """
        xa = vector("x", x)
        za = vector("z", z)
        user = self._stored_user(self.pseudonym(user_id)) if user_id is not None else None
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
            None if probs is None else blob(np.asarray(probs, dtype=np.float64)),
            blob(np.asarray(decision.scores, dtype=np.float64)),
            decision.policy_version,
            model_id,
            seal_vector(self._cipher, blob(xa), x_aad(decision.decision_id)),
            int(xa.shape[0]),
            blob(za),
            int(za.shape[0]),
            decision.group,
            decision.presence,
            decision.city,
        ]
        with self.transaction():
            params[8] = self._candidate_set(tuple(decision.candidates))
            seq = self._next_seq()
            params[0] = seq
            if not wait and self._pipelined:
                # no ON CONFLICT: a reused id must fail the transaction, since nobody waits here
                self._send(_INSERT_DECISION, params)
                return seq
            # DO NOTHING rather than catching the unique violation: in PostgreSQL an error
            # aborts the whole transaction, and with it every other write of a server's batch
            cur = self._conn.execute(
                _INSERT_DECISION + " ON CONFLICT (decision_id) DO NOTHING", params
            )
            if cur.rowcount != 1:
                self._seq = seq - 1
                raise ValidationError.for_field(
                    "decision_id", decision.decision_id, "is already in the event log"
                )
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

    def log_event(
        self,
        decision_id: str,
        type: str,
        value: float,
        ts: float,
        event_id: str | None,
        status: str,
        *,
        wait: bool = True,
    ) -> bool:
        """Store an outcome event with the status the engine gave it (accepted / duplicate / late).

        An ``(decision_id, event_id)`` pair is stored once, whatever the number of concurrent
        requests or processes posting it: returns ``True`` when this call stored it, ``False`` when
        it was already there. Events without ``event_id`` cannot be de-duplicated and are always
        stored. With ``wait=False`` a backend that pipelines (PostgreSQL) sends the row inside the
        open transaction without waiting for the server, and returns ``True`` without knowing
        which case it was (the pair is still stored once; a pair already there leaves a gap in
        the journal's ``seq``, which is an order, not a count). SQLite behaves as ``wait=True``.
        """
        # the engine checks the type against its RewardSpec; the log keeps any well-formed name
        if not isinstance(type, str) or not type or len(type) > 32:
            raise ValidationError.for_field(
                "type", type, "must be an event type name of 1-32 characters"
            )
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
            row = (seq, decision_id, event_id, type, float(value), float(ts), status)
            if not wait and self._pipelined:
                self._send(_INSERT_EVENT, row)
                return True
            cur = self._conn.execute(_INSERT_EVENT, row)
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
            # nothing reads its result: on PostgreSQL it travels with the next round trip
            self._send(
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
            self._send(
                "INSERT INTO admin (seq, ts, op, payload) VALUES (?,?,?,?)",
                (seq, time.time() if ts is None else float(ts), op, text),
            )
        return seq

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
        The reserved platform ``consent`` is the user's consent record: it always merges, and
        each change is logged (:meth:`~bandit_engine.store.consent.LogConsent.set_consent`).
        """
        if not isinstance(platform, str) or not platform:
            raise ValidationError.for_field("platform", platform, "must be a non-empty string")
        if not isinstance(fields, Mapping):
            raise ValidationError.for_field("fields", fields, "must be a mapping field -> value")
        if platform == CONSENT:
            return dict(self.set_consent(user_id, fields, now=now))
        pseudonym = self.pseudonym(user_id)
        user = self._profile_key(pseudonym)
        aad = profile_aad(pseudonym, platform)
        with self.transaction():
            # a replacement does not need the stored fields (one round trip less on PostgreSQL)
            row = (
                None
                if replace
                else self._conn.execute(
                    'SELECT fields FROM profiles WHERE "user" = ? AND platform = ?',
                    (user, platform),
                ).fetchone()
            )
            merged: dict[str, Any] = (
                {}
                if row is None
                else json.loads(open_text(self._cipher, row[0], aad, "profiles.fields"))
            )
            merged.update(fields)
            try:
                text = json.dumps(merged, allow_nan=False, separators=(",", ":"), sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise ValidationError.for_field(
                    "fields", dict(fields), f"must be JSON values with finite numbers ({exc})"
                ) from None
            self._send(
                'INSERT INTO profiles ("user", platform, fields, updated_at) VALUES (?,?,?,?) '
                'ON CONFLICT("user", platform) DO UPDATE SET fields = excluded.fields, '
                "updated_at = excluded.updated_at",
                (
                    user,
                    platform,
                    seal_text(self._cipher, text, aad),
                    time.time() if now is None else float(now),
                ),
            )
        return merged
