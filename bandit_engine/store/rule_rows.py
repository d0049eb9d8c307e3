"""The business rules' counters in the event log (both backends, the same SQL).

Tables (schema version 2, :mod:`~bandit_engine.store.schema` and
:mod:`~bandit_engine.store.pg_schema`):

* ``rule_shows ("user", scope, item, ts)``: one row per served decision and cap scope (bundle,
  deal or course), under the user's pseudonym; rows older than the longest cap window are deleted
  when the user is next shown something, and :meth:`~LogRuleRows.forget_rule_rows` (called by
  ``forget_user``) deletes all of a user's rows.
* ``rule_budgets (budget, item, day, n)``: units used per budget, item and UTC day, incremented
  with ``INSERT ... ON CONFLICT DO UPDATE``.
* ``decision_modes (decision_id, mode, target_p)``: how a decision was chosen when not by the
  policy alone (a fallback, apprentice mode) and, in apprentice mode, the learner's probability of
  the served bundle (what an offline estimate of the learner on the rule's traffic needs).

Reads and writes run inside the caller's transaction when there is one (the decision's: every
writer takes the log one at a time, so a count read there is the count incremented there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .connection import LogConnection

__all__ = ["LogRuleRows"]


class LogRuleRows(LogConnection):
    """Counter methods of the event log (a mixin of both backends' log classes)."""

    def rule_history(
        self, pseudonym: str, since: float, *, orders: bool
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
        """``(shows since since, orders)`` of the user under ``pseudonym``: shows as
        ``(scope, item, ts)``, orders as ``(deal_id, course_id, ts)`` from the logged decisions'
        accepted order events."""
        user = self._stored_user(pseudonym)
        with self._lock:
            c = self._conn
            shows = [
                (str(r[0]), str(r[1]), float(r[2]))
                for r in c.execute(
                    'SELECT scope, item, ts FROM rule_shows WHERE "user" = ? AND ts > ?',
                    (user, float(since)),
                )
            ]
            bought: list[tuple[str, str, float]] = []
            if orders:
                bought = [
                    (str(r[0]), str(r[1]), float(r[2]))
                    for r in c.execute(
                        "SELECT d.deal_id, d.course_id, e.ts FROM decisions d JOIN events e "
                        "ON e.decision_id = d.decision_id WHERE d.\"user\" = ? AND e.type = 'order' "
                        "AND e.status = 'accepted' ORDER BY e.ts",
                        (user,),
                    )
                ]
        return shows, bought

    def rule_budget_used(self, day: int, at_least: int = 1) -> dict[tuple[str, str], int]:
        """Units used per ``(budget, item)`` on UTC day ``day``, where at least ``at_least``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT budget, item, n FROM rule_budgets WHERE day = ? AND n >= ?",
                (int(day), int(at_least)),
            ).fetchall()
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def _count_units(self, units: Sequence[tuple[str, str]], day: int) -> None:
        for budget, item in units:
            self._conn.execute(
                "INSERT INTO rule_budgets (budget, item, day, n) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (budget, item, day) DO UPDATE SET n = rule_budgets.n + 1",
                (budget, item, int(day)),
            )

    def rule_record_show(
        self,
        pseudonym: str | None,
        shows: Sequence[tuple[str, str]],
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
        forget_before: float,
    ) -> None:
        """Count one served decision (its cap scopes and decision budgets)."""
        if not shows and not budget_units:
            return
        with self.transaction():
            c = self._conn
            if pseudonym is not None and shows:
                user = self._stored_user(pseudonym)
                c.execute(
                    'DELETE FROM rule_shows WHERE "user" = ? AND ts <= ?',
                    (user, float(forget_before)),
                )
                for scope, item in shows:
                    c.execute(
                        'INSERT INTO rule_shows ("user", scope, item, ts) VALUES (?, ?, ?, ?)',
                        (user, scope, item, float(now)),
                    )
            self._count_units(budget_units, day)

    def rule_record_order(self, budget_units: Sequence[tuple[str, str]], *, day: int) -> None:
        """Count one accepted order for the orders budgets."""
        if budget_units:
            with self.transaction():
                self._count_units(budget_units, day)

    def log_mode(self, decision_id: str, mode: str, target_p: float | None = None) -> None:
        """Record how a decision was chosen (see the module docstring)."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO decision_modes (decision_id, mode, target_p) VALUES (?, ?, ?) "
                "ON CONFLICT (decision_id) DO NOTHING",
                (decision_id, mode, target_p),
            )

    def decision_modes(self, *, closed_only: bool = False) -> list[dict[str, Any]]:
        """Logged modes with their decisions' propensity, reward and status, in journal order."""
        where = " WHERE d.status IN ('learned', 'default')" if closed_only else ""
        with self._lock:
            rows = self._conn.execute(
                "SELECT m.decision_id, m.mode, m.target_p, d.propensity, d.reward, d.status "
                "FROM decision_modes m JOIN decisions d ON d.decision_id = m.decision_id"
                f"{where} ORDER BY d.seq"
            ).fetchall()
        return [
            {
                "decision_id": str(r[0]),
                "mode": str(r[1]),
                "target_p": None if r[2] is None else float(r[2]),
                "propensity": float(r[3]),
                "reward": None if r[4] is None else float(r[4]),
                "status": str(r[5]),
            }
            for r in rows
        ]

    def forget_rule_rows(self, user: Any) -> dict[str, int]:
        """Delete a user's counter rows and their decisions' modes (inside ``forget_user``'s
        transaction; ``user`` as stored)."""
        c = self._conn
        ids = 'SELECT decision_id FROM decisions WHERE "user" = ?'
        n_modes = c.execute(
            f"DELETE FROM decision_modes WHERE decision_id IN ({ids})", (user,)
        ).rowcount
        n_shows = c.execute('DELETE FROM rule_shows WHERE "user" = ?', (user,)).rowcount
        return {"rule_shows": n_shows, "decision_modes": n_modes}
