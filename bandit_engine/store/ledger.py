"""The privacy-budget ledger: every differentially private release's spend, refused past the
configured total.

The ledger is a table ``dp_ledger`` of the event log (SQLite or PostgreSQL, the same SQL), one row
per release: when, what (a label), which mechanism, and its ``epsilon`` and ``delta``. The total
budget is recorded in the log's ``meta`` the first time a ledger is opened and cannot be changed
silently afterwards. :meth:`PrivacyLedger.spend` checks and records a spend in one transaction
that holds the journal lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a row lock), so two
processes releasing at once cannot both pass the check; a caller spends *before* it draws any
noise (:mod:`bandit_engine.privacy.dp` does), so nothing is ever released that was not
accounted, and a crash after the spend only wastes budget. Composition is basic (sequential):
the totals are the sums of the spends, which is valid for any mix of mechanisms.

The table is part of the log's schema (migration step 5 of both backends,
:data:`~bandit_engine.store.schema.LEDGER_DDL`); a log that an older version gave a ledger on
first use keeps it as it is.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from ..errors import ConfigError, ConflictError, ValidationError
from .connection import LogConnection

__all__ = ["LedgerEntry", "PrivacyLedger"]

_META_KEY = "dp_budget"


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded release."""

    ts: float
    label: str
    mechanism: str
    epsilon: float
    delta: float
    details: str


def _check_budget(name: str, value: float, *, allow_zero: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        rule = "must be a finite number >= 0" if allow_zero else "must be a finite number > 0"
        raise ConfigError.for_field(name, value, rule)
    return float(value)


class PrivacyLedger:
    """The budget of one event log.

    Parameters
    ----------
    log
        The event log (either backend) that holds the ledger.
    total_epsilon, total_delta
        The total budget. The first ledger opened on a log records it; later ones must pass the
        same values (a :class:`ConfigError` names the recorded ones otherwise).
    """

    def __init__(
        self, log: LogConnection, *, total_epsilon: float, total_delta: float = 0.0
    ) -> None:
        self.total_epsilon = _check_budget("total_epsilon", total_epsilon, allow_zero=False)
        self.total_delta = _check_budget("total_delta", total_delta, allow_zero=True)
        if self.total_delta >= 1:
            raise ConfigError.for_field("total_delta", total_delta, "must be < 1")
        self.log = log
        budget = json.dumps({"epsilon": self.total_epsilon, "delta": self.total_delta})
        with log.transaction():
            row = log._conn.execute("SELECT value FROM meta WHERE key = ?", (_META_KEY,)).fetchone()
            if row is None:
                log._conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)", (_META_KEY, budget)
                )
            else:
                recorded = json.loads(row[0])
                if (recorded["epsilon"], recorded["delta"]) != (
                    self.total_epsilon,
                    self.total_delta,
                ):
                    raise ConfigError(
                        f"total_epsilon / total_delta must be the budget recorded in the log "
                        f"({recorded['epsilon']}, {recorded['delta']}), got "
                        f"({self.total_epsilon}, {self.total_delta})",
                        field="total_epsilon",
                        value=self.total_epsilon,
                    )

    def entries(self) -> list[LedgerEntry]:
        """Every recorded release, oldest first."""
        with self.log._lock:
            rows = self.log._conn.execute(
                "SELECT ts, label, mechanism, epsilon, delta, details FROM dp_ledger ORDER BY ts"
            ).fetchall()
        return [
            LedgerEntry(float(r[0]), str(r[1]), str(r[2]), float(r[3]), float(r[4]), str(r[5]))
            for r in rows
        ]

    def spent(self) -> tuple[float, float]:
        """``(epsilon, delta)`` spent so far."""
        entries = self.entries()
        return math.fsum(e.epsilon for e in entries), math.fsum(e.delta for e in entries)

    def remaining(self) -> tuple[float, float]:
        """``(epsilon, delta)`` still available."""
        eps, delta = self.spent()
        return max(0.0, self.total_epsilon - eps), max(0.0, self.total_delta - delta)

    def spend(
        self,
        epsilon: float,
        delta: float = 0.0,
        *,
        label: str,
        mechanism: str,
        details: str = "",
    ) -> LedgerEntry:
        """Record a release's spend, or refuse it (:class:`ConflictError`, nothing recorded)
        when it would take the totals past the budget."""
        eps = _check_budget("epsilon", epsilon, allow_zero=False)
        dlt = _check_budget("delta", delta, allow_zero=True)
        if not isinstance(label, str) or not label:
            raise ValidationError.for_field("label", label, "must be a non-empty string")
        entry = LedgerEntry(time.time(), label, mechanism, eps, dlt, details)
        with self.log.transaction():
            rows = self.log._conn.execute("SELECT epsilon, delta FROM dp_ledger").fetchall()
            spent_eps = math.fsum(float(r[0]) for r in rows)
            spent_delta = math.fsum(float(r[1]) for r in rows)
            if spent_eps + eps > self.total_epsilon or spent_delta + dlt > self.total_delta:
                raise ConflictError(
                    f"epsilon {eps} (delta {dlt}) for {label!r} would exceed the privacy budget: "
                    f"spent {spent_eps:g} of {self.total_epsilon:g} "
                    f"(delta {spent_delta:g} of {self.total_delta:g})",
                    field="epsilon",
                    value=eps,
                )
            self.log._conn.execute(
                "INSERT INTO dp_ledger (ts, label, mechanism, epsilon, delta, details)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (entry.ts, entry.label, entry.mechanism, eps, dlt, details),
            )
        return entry
