"""Consent in the event log (issue 15): each user's consent record and the log of its changes.

The record is kept like a platform's profile record, under the reserved platform
:data:`~bandit_engine.profiles.CONSENT` of the ``profiles`` table (``{"<platform>": bool, ...,
"personalisation": bool}``, sealed at rest like the others), so the one profile read of a
decision brings it along. Every change is appended to ``consent_log`` (schema step 5: when, the
user's pseudonym, the scope, the new value, where it came from: ``api`` or ``import``); raw ids
never reach it.

Withdrawing a platform deletes that platform's stored record of the user in the same transaction
(data minimisation: the record exists only to be fused, and the platform keeps its own copy; a
later grant plus the platform's next import brings it back). Records written afterwards while the
consent stays withdrawn (an import without a consent column, the admin endpoint) are stored but
never fused (:func:`~bandit_engine.profiles.withhold` applies the record at every decision).
Opting out of personalisation keeps the profile records (they are unused while it stands); the
engine erases the user's live behaviour.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..profiles import CONSENT, PERSONALISATION, check_consent
from .connection import LogConnection
from .crypto import open_text, profile_aad, seal_text

__all__ = ["ConsentChange", "LogConsent"]

_UPSERT = (
    'INSERT INTO profiles ("user", platform, fields, updated_at) VALUES (?,?,?,?) '
    'ON CONFLICT("user", platform) DO UPDATE SET fields = excluded.fields, '
    "updated_at = excluded.updated_at"
)


@dataclass(frozen=True)
class ConsentChange:
    """One logged change of a user's consent."""

    ts: float
    scope: str
    granted: bool
    source: str


class LogConsent(LogConnection):
    """The consent methods of the event logs (both backends: the same SQL)."""

    def set_consent(
        self,
        user_id: str,
        consent: Mapping[str, Any],
        *,
        source: str = "api",
        now: float | None = None,
    ) -> dict[str, bool]:
        """Merge ``consent`` (scope -> bool) over the user's record; log each scope whose value
        changes (or is recorded for the first time) and delete the records of platforms now
        withheld. Returns the whole record."""
        given = check_consent(consent)
        pseudonym = self.pseudonym(user_id)
        ts = time.time() if now is None else float(now)
        with self.transaction():
            return self._consent_rows(pseudonym, given, source, ts)

    def write_consents(
        self,
        user_ids: Sequence[str],
        records: Sequence[Mapping[str, bool]],
        *,
        source: str = "import",
        now: float | None = None,
    ) -> int:
        """:meth:`set_consent` for many users in one transaction (the bulk import's consent
        columns; the flags already checked). Returns the number of users."""
        ts = time.time() if now is None else float(now)
        with self.transaction():
            for user_id, given in zip(user_ids, records, strict=True):
                if given:
                    self._consent_rows(self.pseudonym(user_id), dict(given), source, ts)
        return len(user_ids)

    def _consent_rows(
        self, pseudonym: str, given: Mapping[str, bool], source: str, ts: float
    ) -> dict[str, bool]:
        c = self._conn
        key = self._profile_key(pseudonym)
        aad = profile_aad(pseudonym, CONSENT)
        row = c.execute(
            'SELECT fields FROM profiles WHERE "user" = ? AND platform = ?', (key, CONSENT)
        ).fetchone()
        before: dict[str, bool] = (
            {}
            if row is None
            else json.loads(open_text(self._cipher, row[0], aad, "profiles.fields"))
        )
        changed = [(s, f) for s, f in given.items() if before.get(s) is not f]
        merged = {**before, **given}
        if changed:
            text = json.dumps(merged, separators=(",", ":"), sort_keys=True)
            c.execute(_UPSERT, (key, CONSENT, seal_text(self._cipher, text, aad), ts))
        for scope, flag in changed:
            c.execute(
                'INSERT INTO consent_log (ts, "user", scope, granted, source) VALUES (?,?,?,?,?)',
                (ts, key, scope, flag, source),
            )
            if not flag and scope != PERSONALISATION:
                c.execute('DELETE FROM profiles WHERE "user" = ? AND platform = ?', (key, scope))
        return merged

    def consent_log_of(self, user_id: str) -> list[ConsentChange]:
        """The logged consent changes of a user, oldest first."""
        key = self._profile_key(self.pseudonym(user_id))
        with self._lock:
            rows = self._conn.execute(
                'SELECT ts, scope, granted, source FROM consent_log WHERE "user" = ? ORDER BY seq',
                (key,),
            ).fetchall()
        return [ConsentChange(float(r[0]), str(r[1]), bool(r[2]), str(r[3])) for r in rows]
