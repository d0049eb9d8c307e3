"""The business rules' counters in the event log: :class:`LogRuleState`, the
:class:`~bandit_engine.rules.RuleState` a :class:`~bandit_engine.service.LoggedEngine` gives its
engine's rules, so caps and budgets hold across every process that serves from one log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..rules.state import History
from ..store import EventStore

__all__ = ["LogRuleState"]


class LogRuleState:
    """Caps, budgets and exclusions read from and counted in ``log`` (its ``rule_*`` tables).

    Users are keyed by the log's HMAC pseudonym; the orders that exclusions read are the logged
    accepted order events of the user's logged decisions, so they survive restarts and are shared
    by every process."""

    def __init__(self, log: EventStore) -> None:
        self.log = log

    def user_key(self, user_id: str) -> str:
        return self.log.pseudonym(user_id)

    def history(self, key: str, since: float, *, orders: bool) -> History:
        shows, bought = self.log.rule_history(key, since, orders=orders)
        return History(shows, bought)

    def budget_used(self, day: int, at_least: int) -> Mapping[tuple[str, str], int]:
        return self.log.rule_budget_used(day, at_least)

    def record_show(
        self,
        key: str | None,
        shows: Sequence[tuple[str, str]],
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
        forget_before: float,
    ) -> None:
        self.log.rule_record_show(
            key, shows, budget_units, now=now, day=day, forget_before=forget_before
        )

    def record_order(
        self,
        key: str | None,
        deal_id: str,
        course_id: str,
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
    ) -> None:
        # exclusions read orders from the logged events; only the orders budgets count here
        self.log.rule_record_order(budget_units, day=day)

    def forget(self, key: str) -> int:
        return 0  # the log's forget_user deletes the rows (under the same transaction)
