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
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from .errors import ConfigError, ConflictError, NotFoundError, ValidationError
from .records import OutcomeEvent

__all__ = [
    "PLATFORMS",
    "Attribution",
    "ClosedDecision",
    "EventKind",
    "EventStatus",
    "RewardSpec",
    "reward_to_cost",
]

EventStatus = Literal["accepted", "duplicate", "late"]
EVENT_TYPES = ("click", "order")
#: Where an event happens: on the knowledge platform (a course), on the group-buying platform (a
#: deal), or on the whole bundle (the built-in ``order`` buys the pair).
PLATFORMS = ("knowledge", "groupbuy", "bundle")
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
P = TypeVar("P")


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError.for_field(name, value, "must be a finite number")
    if not math.isfinite(value):
        raise ConfigError.for_field(name, value, "must be a finite number")
    return float(value)


@dataclass(frozen=True)
class EventKind:
    """An event type beyond ``click`` / ``order``, declared in :class:`RewardSpec`.

    Parameters
    ----------
    platform
        ``"knowledge"`` (the course part: ``course_purchase``, ``course_play``), ``"groupbuy"``
        (the deal part: ``deal_order``) or ``"bundle"``. An event of a platform may only be
        reported for a bundle that has that part.
    weight
        Reward of one such event.
    value_weight
        Reward per unit of the event's value (``0``: the value is kept but not learned).
    conversion
        Whether the event is a purchase on its platform (counted by the cross-platform conversion
        metrics of :mod:`bandit_engine.reporting`); ``course_play`` would set it ``False``.
    """

    platform: str
    weight: float = 0.0
    value_weight: float = 0.0
    conversion: bool = True

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ConfigError.for_field("platform", self.platform, f"must be one of {PLATFORMS}")
        _finite("weight", self.weight)
        _finite("value_weight", self.value_weight)
        if not isinstance(self.conversion, bool):
            raise ConfigError.for_field("conversion", self.conversion, "must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "weight": self.weight,
            "value_weight": self.value_weight,
            "conversion": self.conversion,
        }


def _event_kind(name: str, value: Any) -> EventKind:
    if isinstance(value, EventKind):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError.for_field(
            f"events.{name}", value, "must be an EventKind or a mapping with 'platform'"
        )
    known = {"platform", "weight", "value_weight", "conversion"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError.for_field(
            f"events.{name}.{unknown[0]}", value[unknown[0]], f"is not one of {sorted(known)}"
        )
    if "platform" not in value:
        raise ConfigError.for_field(f"events.{name}", dict(value), "must name its 'platform'")
    try:
        return EventKind(**dict(value))
    except ConfigError as exc:  # name the declaration: events.<type>.<setting>
        raise ConfigError(
            f"events.{name}.{exc.message}", field=f"events.{name}.{exc.field}", value=exc.value
        ) from None


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
    events
        More event types, ``{name: EventKind(platform, weight, value_weight, conversion)}`` (or
        plain mappings), e.g. ``{"deal_order": EventKind("groupbuy", 2.0, 0.01),
        "course_purchase": EventKind("knowledge", 2.0), "course_play": EventKind("knowledge",
        0.2, conversion=False)}``. Names are lower-case letters, digits and ``_`` (at most 32)
        and may not be ``click`` or ``order``. ``click`` is not tied to a platform; ``order``
        buys the bundle (platform ``"bundle"``). A spec without ``events`` is the one older
        model files hold, unchanged.
    """

    click: float = 1.0
    order: float = 0.0
    value_weight: float = 0.0
    cap: float | None = None
    default_reward: float = 0.0
    window: float = 3600.0
    events: Mapping[str, EventKind] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("click", "order", "value_weight", "default_reward"):
            _finite(name, getattr(self, name))
        if self.cap is not None and _finite("cap", self.cap) <= 0:
            raise ConfigError.for_field("cap", self.cap, "must be > 0 or None")
        if _finite("window", self.window) < 0:
            raise ConfigError.for_field("window", self.window, "must be >= 0")
        if not isinstance(self.events, Mapping):
            raise ConfigError.for_field(
                "events", self.events, "must be a mapping name -> EventKind"
            )
        kinds: dict[str, EventKind] = {}
        for name, kind in self.events.items():
            if (
                not isinstance(name, str)
                or not name
                or len(name) > 32
                or not set(name) <= _TYPE_CHARS
            ):
                raise ConfigError.for_field(
                    "events", name, "names must be 1-32 lower-case letters, digits or '_'"
                )
            if name in EVENT_TYPES:
                raise ConfigError.for_field("events", name, "must not redeclare click or order")
            kinds[name] = _event_kind(name, kind)
        # frozen: store a private copy so the caller's dict cannot change the spec afterwards
        object.__setattr__(self, "events", kinds)

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every event type this spec accepts: ``click``, ``order``, then the declared ones."""
        return (*EVENT_TYPES, *self.events)

    def platform_of(self, type: str) -> str | None:
        """The platform of an event type (``None`` for ``click``; ``"bundle"`` for ``order``)."""
        if type == "click":
            return None
        if type == "order":
            return "bundle"
        return self._kind(type).platform

    def is_conversion(self, type: str) -> bool:
        """Whether an event type is a purchase (``order`` and declared conversions)."""
        if type == "click":
            return False
        if type == "order":
            return True
        return self._kind(type).conversion

    def check_type(self, type: Any) -> str:
        """``type`` if this spec accepts it, else a :class:`ValidationError` naming the type and
        the declared ones."""
        if isinstance(type, str) and (type in EVENT_TYPES or type in self.events):
            return type
        raise ValidationError.for_field(
            "type", type, f"must be one of the declared event types {list(self.event_types)}"
        )

    def check_part(self, type: str, deal_id: str | None, course_id: str | None) -> None:
        """Refuse an event of a platform for a bundle without that part (a deal order for a
        course-only bundle, a course purchase for a deal-only one). Every bundle of a
        :class:`~bandit_engine.catalog.Catalog` today has both parts; the rule is here so an
        event never silently credits a part the bundle does not have."""
        platform = self.platform_of(type)
        need = {
            "groupbuy": (("deal", deal_id),),
            "knowledge": (("course", course_id),),
            "bundle": (("deal", deal_id), ("course", course_id)),
        }.get(platform or "", ())
        for part, pid in need:
            if not pid:
                raise ValidationError.for_field(
                    "type",
                    type,
                    f"is a {platform} event, but the decision's bundle has no {part} part",
                )

    def _kind(self, type: str) -> EventKind:
        kind = self.events.get(type)
        if kind is None:
            self.check_type(type)
            raise AssertionError("unreachable")  # check_type raised
        return kind

    def event_reward(self, type: str, value: float = 0.0) -> float:
        """Reward contributed by one event (before the cap)."""
        if type == "click":
            return self.click
        if type == "order":
            return self.order + self.value_weight * value
        kind = self._kind(type)
        return kind.weight + kind.value_weight * value

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
        out: dict[str, Any] = {
            "click": self.click,
            "order": self.order,
            "value_weight": self.value_weight,
            "cap": self.cap,
            "default_reward": self.default_reward,
            "window": self.window,
        }
        if self.events:  # absent otherwise: files of specs without events stay byte-identical
            out["events"] = {name: kind.to_dict() for name, kind in self.events.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardSpec:
        known = {"click", "order", "value_weight", "cap", "default_reward", "window", "events"}
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


#: A pending decision as :class:`Attribution` keeps it: ``(payload, timestamp, deadline,
#: reward_sum, n_events, event_ids)``, replaced whole when an event changes it. A plain tuple, not
#: an object, because a server keeps a whole attribution window of them (60,000 a minute at
#: 1,000 decisions/s): CPython's collector stops tracking a plain tuple whose items it need not
#: track, so with an untracked payload (:class:`~bandit_engine.Engine` passes one) full
#: collections, which pause serving, do not walk the pending decisions.
_Record: TypeAlias = "tuple[Any, float, float, float, int, _Ids]"
#: Event ids seen for one decision: ``None`` (most decisions have none), a tuple while short
#: (untracked, like the record; a search of a few ids costs less than a set), a set past
#: ``_IDS_AS_TUPLE`` so that a decision with many events stays linear.
_Ids: TypeAlias = "tuple[str, ...] | set[str] | None"
_IDS_AS_TUPLE = 32


def _with_id(ids: _Ids, event_id: str) -> tuple[str, ...] | set[str]:
    """``ids`` with ``event_id`` added (the caller checked it was not there)."""
    if ids is None:
        return (event_id,)
    if isinstance(ids, set):
        ids.add(event_id)
        return ids
    if len(ids) < _IDS_AS_TUPLE:
        return (*ids, event_id)
    return {*ids, event_id}


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
        self._pending: dict[str, _Record] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        # decision id -> status, bounded, oldest first; event ids seen only for decisions that
        # had some (a set per closed decision would dominate memory on long runs, and the
        # collector's time: they are kept as the pending record kept them)
        self._closed: OrderedDict[str, str] = OrderedDict()
        self._closed_events: dict[str, tuple[str, ...] | set[str]] = {}
        self.n_late = 0
        self.n_duplicates = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._pending or decision_id in self._closed

    def oldest_pending(self) -> float | None:
        """Timestamp of the oldest pending decision (the learner's lag), ``None`` when none is
        pending (decisions are pending in the order they were added)."""
        for pending in self._pending.values():
            return pending[1]
        return None

    def add_decision(self, decision_id: str, timestamp: float, payload: P) -> None:
        """Start the attribution window of a new decision."""
        if decision_id in self._pending or decision_id in self._closed:
            raise ConflictError.for_field("decision_id", decision_id, "is already in use")
        deadline = timestamp + self.spec.window
        self._pending[decision_id] = (payload, timestamp, deadline, 0.0, 0, None)
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, decision_id))

    def pending_payload(self, decision_id: str) -> P:
        """The payload of a pending decision (NotFoundError if it is not pending)."""
        pending = self._pending.get(decision_id)
        if pending is None:
            raise NotFoundError.for_field("decision_id", decision_id, "is not a pending decision")
        payload: P = pending[0]
        return payload

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
                seen = self._closed_events.get(decision_id)
                if seen is not None and event_id in seen:
                    self.n_duplicates += 1
                    return "duplicate"
                self._closed_events[decision_id] = _with_id(seen, event_id)
            self.n_late += 1
            return "late"
        payload, ts, deadline, reward_sum, n_events, ids = pending
        if timestamp < ts:
            raise ValidationError.for_field(
                "timestamp", timestamp, f"must not be before its decision ({ts})"
            )
        if event_id is not None:
            if ids is not None and event_id in ids:
                self.n_duplicates += 1
                return "duplicate"
            ids = _with_id(ids, event_id)
        if timestamp > deadline:
            if event_id is not None:
                self._pending[decision_id] = (payload, ts, deadline, reward_sum, n_events, ids)
            self.n_late += 1
            return "late"
        self._pending[decision_id] = (
            payload,
            ts,
            deadline,
            reward_sum + contribution,
            n_events + 1,
            ids,
        )
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
        payload, _, _, reward_sum, n_events, ids = self._pending.pop(decision_id)
        status: Literal["learned", "default"]
        if n_events:
            reward, status = self.spec.total(reward_sum), "learned"
        else:
            reward, status = self.spec.default_reward, "default"
        self._remember_closed(decision_id, status, ids)
        return ClosedDecision(decision_id, payload, reward, status, n_events, now)

    def _remember_closed(self, decision_id: str, status: str, event_ids: _Ids) -> None:
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
        ids: _Ids = None
        for event_id in event_ids:
            if ids is None or event_id not in ids:
                ids = _with_id(ids, event_id)
        self._remember_closed(decision_id, status, ids)

    def pending_items(self) -> list[tuple[str, float, P, float, int, list[str]]]:
        """Pending decisions as ``(id, timestamp, payload, reward_sum, n_events, event_ids)`` in
        deadline order (used to save an engine)."""
        out = []
        for _, _, d in sorted(self._heap):
            payload, ts, _, reward_sum, n_events, ids = self._pending[d]
            out.append((d, ts, payload, reward_sum, n_events, sorted(ids or ())))
        return out

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
        ids: _Ids = None
        for event_id in event_ids:
            if ids is None or event_id not in ids:
                ids = _with_id(ids, event_id)
        payload, ts, deadline, _, _, _ = self._pending[decision_id]
        self._pending[decision_id] = (payload, ts, deadline, float(reward_sum), int(n_events), ids)
