"""Rewards: how clicks and orders become one number, and when a decision learns it.

:class:`RewardSpec` declares the reward (a weight per event type, a weight per unit of order value, an
optional cap) and the attribution window. :class:`Attribution` joins outcome events to pending decisions
and closes each decision exactly once:

* with the total reward of the events whose timestamps fall inside ``[t_decision, t_decision + window]``
  (status ``"learned"``), or
* with ``default_reward`` when the window closes with no such event (status ``"default"``).

Events that arrive for a decision whose window has passed are kept and counted as late (status
``"late"``) but never learned from. An event id seen twice for the same decision counts once. Time comes
from the caller (an injectable clock upstream), so all of this is testable without sleeping.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .errors import ConfigError, ConflictError, NotFoundError, ValidationError
from .records import OutcomeEvent

__all__ = [
    "Attribution",
    "ClosedDecision",
    "EventStatus",
    "RewardSpec",
    "reward_to_cost",
]

EventStatus = Literal["accepted", "duplicate", "late"]
EVENT_TYPES = ("click", "order")
P = TypeVar("P")


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError.for_field(name, value, "must be a finite number")
    if not math.isfinite(value):
        raise ConfigError.for_field(name, value, "must be a finite number")
    return float(value)


@dataclass(frozen=True)
class RewardSpec:
    """How outcome events become the scalar reward a policy learns.

    ``reward = min(cap, sum over events of weight[type] + value_weight * value)``, where only orders carry a
    value. With the defaults a decision's reward is its number of clicks.

    Parameters
    ----------
    click, order
        Weight of one click / one order.
    value_weight
        Weight per unit of order value (for example ``0.01`` to count 1 per 100 CNY).
    cap
        Upper bound of the reward of one decision (``None``: no cap). Must be > 0.
    default_reward
        Reward learned when the attribution window closes with no event.
    window
        Attribution window in seconds after the decision. Must be >= 0.
    """

    click: float = 1.0
    order: float = 0.0
    value_weight: float = 0.0
    cap: float | None = None
    default_reward: float = 0.0
    window: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("click", "order", "value_weight", "default_reward"):
            _finite(name, getattr(self, name))
        if self.cap is not None and _finite("cap", self.cap) <= 0:
            raise ConfigError.for_field("cap", self.cap, "must be > 0 or None")
        if _finite("window", self.window) < 0:
            raise ConfigError.for_field("window", self.window, "must be >= 0")

    def event_reward(self, type: str, value: float = 0.0) -> float:
        """Reward contributed by one event (before the cap)."""
        if type == "click":
            return self.click
        if type == "order":
            return self.order + self.value_weight * value
        raise ValidationError.for_field("type", type, "must be 'click' or 'order'")

    def total(self, partial_sum: float) -> float:
        """Apply the cap to a sum of event rewards."""
        return partial_sum if self.cap is None else min(partial_sum, self.cap)

    def reward(self, events: Iterable[OutcomeEvent]) -> float:
        """Reward of a set of events (duplicates by ``event_id`` counted once)."""
        seen: set[str] = set()
        total = 0.0
        for event in events:
            if event.event_id is not None:
                if event.event_id in seen:
                    continue
                seen.add(event.event_id)
            total += self.event_reward(event.type, event.value)
        return self.total(total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "click": self.click,
            "order": self.order,
            "value_weight": self.value_weight,
            "cap": self.cap,
            "default_reward": self.default_reward,
            "window": self.window,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardSpec:
        known = {"click", "order", "value_weight", "cap", "default_reward", "window"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError.for_field(
                f"rewards.{unknown[0]}",
                data[unknown[0]],
                f"is not a reward setting ({sorted(known)})",
            )
        return cls(**dict(data))


def reward_to_cost(reward: float, *, scale: float = 1.0) -> float:
    """Vowpal Wabbit minimizes cost; the engine maximizes reward: ``cost = -reward / scale``.

    ``scale`` (> 0) keeps costs in a range VW's learning rate handles well when rewards include order
    values. The sign flip is the whole conversion: VW's ``--cb_explore_adf`` labels are
    ``action:cost:probability`` and a larger reward must become a smaller cost.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ConfigError.for_field("scale", scale, "must be > 0")
    r = float(reward)
    if not math.isfinite(r):
        raise ValidationError.for_field("reward", reward, "must be a finite number")
    return -r / scale


@dataclass
class _Pending(Generic[P]):
    payload: P
    timestamp: float
    deadline: float
    reward_sum: float = 0.0
    n_events: int = 0
    event_ids: set[str] | None = None  # allocated with the first event id (most have none)


@dataclass(frozen=True)
class ClosedDecision(Generic[P]):
    """A decision whose attribution window closed: learn ``reward`` from ``payload``."""

    decision_id: str
    payload: P
    reward: float
    status: Literal["learned", "default"]
    n_events: int
    closed_at: float


class Attribution(Generic[P]):
    """Joins outcome events to pending decisions and closes each decision exactly once.

    Parameters
    ----------
    spec
        The reward spec (weights, cap, default reward, window).
    max_closed
        How many closed decisions are remembered (to classify their later events as late or
        duplicate). Older ones are forgotten first; an event for a forgotten decision is reported
        as unknown.
    """

    def __init__(self, spec: RewardSpec, *, max_closed: int = 1_000_000) -> None:
        self.spec = spec
        self.max_closed = max_closed
        self._pending: dict[str, _Pending[P]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        # decision id -> status, bounded, oldest first; event ids seen only for decisions that
        # had some (a set per closed decision would dominate memory on long runs)
        self._closed: OrderedDict[str, str] = OrderedDict()
        self._closed_events: dict[str, set[str]] = {}
        self.n_late = 0
        self.n_duplicates = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._pending or decision_id in self._closed

    def add_decision(self, decision_id: str, timestamp: float, payload: P) -> None:
        """Start the attribution window of a new decision."""
        if decision_id in self._pending or decision_id in self._closed:
            raise ConflictError.for_field("decision_id", decision_id, "is already in use")
        deadline = timestamp + self.spec.window
        self._pending[decision_id] = _Pending(payload, timestamp, deadline)
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, decision_id))

    def pending_payload(self, decision_id: str) -> P:
        """The payload of a pending decision (NotFoundError if it is not pending)."""
        pending = self._pending.get(decision_id)
        if pending is None:
            raise NotFoundError.for_field("decision_id", decision_id, "is not a pending decision")
        return pending.payload

    def discard(self, decision_id: str) -> None:
        """Forget a pending decision without learning from it (used to undo a failed replay)."""
        self._pending.pop(decision_id, None)
        self._heap = [entry for entry in self._heap if entry[2] != decision_id]
        heapq.heapify(self._heap)

    def status(self, decision_id: str) -> str:
        """``"pending"``, ``"learned"`` or ``"default"``; NotFoundError for unknown ids."""
        if decision_id in self._pending:
            return "pending"
        closed = self._closed.get(decision_id)
        if closed is None:
            raise NotFoundError.for_field("decision_id", decision_id, "is not a known decision")
        return closed

    def add_event(
        self,
        decision_id: str,
        type: str,
        timestamp: float,
        value: float = 0.0,
        event_id: str | None = None,
    ) -> EventStatus:
        """Attach an event. Returns ``"accepted"``, ``"duplicate"`` or ``"late"``."""
        contribution = self.spec.event_reward(type, value)  # validates the type first
        pending = self._pending.get(decision_id)
        if pending is None:
            if decision_id not in self._closed:
                raise NotFoundError.for_field("decision_id", decision_id, "is not a known decision")
            if event_id is not None:
                seen = self._closed_events.setdefault(decision_id, set())
                if event_id in seen:
                    self.n_duplicates += 1
                    return "duplicate"
                seen.add(event_id)
            self.n_late += 1
            return "late"
        if timestamp < pending.timestamp:
            raise ValidationError.for_field(
                "timestamp", timestamp, f"must not be before its decision ({pending.timestamp})"
            )
        if event_id is not None:
            if pending.event_ids is None:
                pending.event_ids = set()
            elif event_id in pending.event_ids:
                self.n_duplicates += 1
                return "duplicate"
            pending.event_ids.add(event_id)
        if timestamp > pending.deadline:
            self.n_late += 1
            return "late"
        pending.reward_sum += contribution
        pending.n_events += 1
        return "accepted"

    def next_deadline(self) -> float:
        """Deadline of the earliest pending decision (``inf`` when none)."""
        return self._heap[0][0] if self._heap else math.inf

    def close_due(self, now: float) -> list[ClosedDecision[P]]:
        """Close every decision whose window ended strictly before ``now``."""
        out: list[ClosedDecision[P]] = []
        heap = self._heap
        while heap and heap[0][0] < now:
            _, _, decision_id = heapq.heappop(heap)
            out.append(self._close(decision_id, now))
        return out

    def close_all(self, now: float) -> list[ClosedDecision[P]]:
        """Close every pending decision now (end of a simulation, shutdown)."""
        out = [self._close(decision_id, now) for _, _, decision_id in sorted(self._heap)]
        self._heap.clear()
        return out

    def _close(self, decision_id: str, now: float) -> ClosedDecision[P]:
        pending = self._pending.pop(decision_id)
        status: Literal["learned", "default"]
        if pending.n_events:
            reward, status = self.spec.total(pending.reward_sum), "learned"
        else:
            reward, status = self.spec.default_reward, "default"
        self._remember_closed(decision_id, status, pending.event_ids)
        return ClosedDecision(decision_id, pending.payload, reward, status, pending.n_events, now)

    def _remember_closed(self, decision_id: str, status: str, event_ids: set[str] | None) -> None:
        self._closed[decision_id] = status
        if event_ids:
            self._closed_events[decision_id] = event_ids
        if len(self._closed) > self.max_closed:
            oldest, _ = self._closed.popitem(last=False)
            self._closed_events.pop(oldest, None)

    def closed_items(self, last: int | None = None) -> list[tuple[str, str, list[str]]]:
        """Closed decisions still remembered, oldest first: ``(id, status, event ids)``."""
        items = list(self._closed.items())
        if last is not None:
            items = items[-last:] if last > 0 else []
        return [(d, st, sorted(self._closed_events.get(d, ()))) for d, st in items]

    def restore_closed(self, decision_id: str, status: str, event_ids: Iterable[str]) -> None:
        """Re-insert a closed decision saved by :meth:`closed_items`."""
        if status not in ("learned", "default"):
            raise ValidationError.for_field("status", status, "must be 'learned' or 'default'")
        self._remember_closed(decision_id, status, set(event_ids) or None)

    def pending_items(self) -> list[tuple[str, float, P, float, int, list[str]]]:
        """Pending decisions as ``(id, timestamp, payload, reward_sum, n_events, event_ids)`` in
        deadline order (used to save an engine)."""
        return [
            (
                d,
                self._pending[d].timestamp,
                self._pending[d].payload,
                self._pending[d].reward_sum,
                self._pending[d].n_events,
                sorted(self._pending[d].event_ids or ()),
            )
            for _, _, d in sorted(self._heap)
        ]

    def restore_pending(
        self,
        decision_id: str,
        timestamp: float,
        payload: P,
        reward_sum: float,
        n_events: int,
        event_ids: Iterable[str],
    ) -> None:
        """Re-insert a pending decision saved by :meth:`pending_items`."""
        self.add_decision(decision_id, timestamp, payload)
        pending = self._pending[decision_id]
        pending.reward_sum = float(reward_sum)
        pending.n_events = int(n_events)
        pending.event_ids = set(event_ids) or None
