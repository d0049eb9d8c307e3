"""The decision-server role: decide with a published model version, log, never learn.

A :class:`DecisionService` is a :class:`~bandit_engine.service.LoggedEngine` whose engine is a
copy of a model version the learner published (:mod:`~bandit_engine.service.learner`). Any number
of them (processes, machines) share one event log:

* a decision is the version's choice, logged with ``policy_version`` ending in ``@v<version>``
  (the version that decided; its propensities are that version's), and nothing of it stays in
  memory (the learner joins its events);
* an event is classified from the log, not from memory, so any server takes events for any
  server's decisions: ``accepted`` inside the window of a decision the learner has not closed,
  ``late`` otherwise, ``duplicate`` for an event id the log already holds;
* profiles are read from the log (:class:`~bandit_engine.service.LogProfiles`), so any server
  serves any user; so is the live behaviour state (decayed per-user impressions, clicks and orders:
  :mod:`~bandit_engine.features.behaviour`): the learner writes each row it changes to the log's
  ``user_behaviour`` table at every step, and before deciding for a user the server reads the
  user's row (one primary-key lookup, :class:`SharedBehaviour`) into its copy of the engine, in
  place of what the version held. Staleness bound: an event is in the row the server reads once
  the learner has stepped past it (its poll, 0.2 s, plus its lag:
  ``bandit_learner_lag_entries``), plus the read cache's ``ttl`` (1 s by default);
* catalog changes are applied to this copy and journaled; the learner applies them in journal
  order and the next version carries them to every server.

Writes can be collected instead of written (``outbox``): the decision server's worker runs a
request's job (profile reads, the decision) outside any write transaction and commits the writes
of many requests together afterwards, so several decision processes on one SQLite file hold its
write lock only for their inserts, not while they compute. Reads then go to ``reads``, a second
connection (WAL readers never wait for the writer).

Each copy's random generator is reseeded from ``(version, server_index)``: servers that loaded
the same version do not draw the same numbers, and a server's draws are reproducible.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import BanditError, ConflictError, NotFoundError, StoreBusyError, ValidationError
from ..records import Decision, LearnedReward
from ..rewards import EventStatus
from ..store import EventStore
from .logged import LoggedEngine, LogProfiles

__all__ = ["DecisionService", "Inflight", "QueuedWrite", "SharedBehaviour", "version_tag"]


@dataclass(frozen=True)
class QueuedWrite:
    """A write a decision server queued for its next group commit, and what it reserves (a
    decision id, an event key) until that commit ends."""

    run: Callable[[], None]
    decision: str | None = None
    event: tuple[str, str] | None = None


@dataclass
class Inflight:
    """Decision ids and event keys queued but not yet committed (so a second request for the same
    id, in the same batch, is caught before the database would)."""

    decisions: set[str] = field(default_factory=set)
    events: set[tuple[str, str]] = field(default_factory=set)

    def hold(self, writes: Sequence[QueuedWrite]) -> None:
        for w in writes:
            if w.decision is not None:
                self.decisions.add(w.decision)
            if w.event is not None:
                self.events.add(w.event)

    def release(self, writes: Sequence[QueuedWrite]) -> None:
        for w in writes:
            if w.decision is not None:
                self.decisions.discard(w.decision)
            if w.event is not None:
                self.events.discard(w.event)


class SharedBehaviour:
    """Users' live-behaviour rows as the learner last wrote them to the log, read one user at a
    time with a small cache.

    A row read is kept for ``ttl`` seconds (0: every decision reads the log), at most
    ``max_entries`` rows (the oldest read is dropped first). So a decision sees the user's
    behaviour as the learner's table held it at most ``ttl`` seconds earlier; the table itself
    trails the log by the learner's lag. The cache outlives model versions (the decision
    server hands it to each new :class:`DecisionService`).

    Parameters
    ----------
    reads
        The log connection reads go to (a decision server's read-only connection).
    ttl
        Seconds a row read stays valid.
    max_entries
        Rows cached at most.
    clock
        Monotonic clock (seconds).
    """

    def __init__(
        self,
        reads: EventStore,
        *,
        ttl: float = 1.0,
        max_entries: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl < math.inf:
            raise ValidationError.for_field("ttl", ttl, "must be a finite number of seconds >= 0")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValidationError.for_field("max_entries", max_entries, "must be an int >= 1")
        self.reads = reads
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.clock = clock
        self._cache: dict[bytes, tuple[float, bytes | None]] = {}
        self.n_reads = 0
        self.n_hits = 0

    def row(self, key: bytes) -> bytes | None:
        """The user's row bytes (``None``: no history in the log)."""
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            self.n_hits += 1
            return hit[1]
        found = self.reads.behaviour_of(key.hex())
        self.n_reads += 1
        data = None if found is None else found[1]
        self._cache.pop(key, None)
        if len(self._cache) >= self.max_entries:
            self._cache.pop(next(iter(self._cache)))  # the oldest read (dicts keep order)
        self._cache[key] = (now, data)
        return data

    def forget(self, key: bytes) -> None:
        """Drop a cached row (the user was forgotten)."""
        self._cache.pop(key, None)


def version_tag(policy_version: str, version: int) -> str:
    """The ``policy_version`` a decision server logs: the engine's, then ``@v<version>``."""
    return f"{policy_version}@v{version}"


def _reseed(engine: Engine, version: int, server_index: int) -> None:
    rng = getattr(engine.policy, "rng_", None)
    if isinstance(rng, np.random.Generator):
        engine.policy.rng_ = np.random.default_rng([version, server_index, 0x5EED])  # type: ignore[attr-defined]


class DecisionService(LoggedEngine):
    """Decides with a model version and logs; events are classified from the log (module
    docstring).

    Parameters
    ----------
    engine
        The engine of the version (``Engine.from_state`` of its bytes, or the base engine as
        version 0 before the learner published one).
    log
        The shared event log.
    version
        The model version number.
    server_index
        This server's number (seeds its random generator).
    """

    def __init__(
        self,
        engine: Engine,
        log: EventStore,
        *,
        version: int,
        server_index: int = 0,
        reads: EventStore | None = None,
        inflight: Inflight | None = None,
        behaviour: SharedBehaviour | None = None,
    ) -> None:
        super().__init__(engine, log, profiles_in_log=True)
        self.version = int(version)
        self.server_index = int(server_index)
        self.reads = reads if reads is not None else log
        if reads is not None:
            engine.profiles = LogProfiles(reads)  # profiles are read beside the writer
        self.inflight = inflight if inflight is not None else Inflight()
        #: where writes go while a worker collects them (None: written at once)
        self.outbox: list[QueuedWrite] | None = None
        #: the users' live behaviour as the learner shares it (None: the engine keeps none)
        self.behaviour: SharedBehaviour | None = None
        if engine.behaviour is not None and log.pseudonymizes:
            self.behaviour = behaviour if behaviour is not None else SharedBehaviour(self.reads)
        _reseed(engine, self.version, self.server_index)

    def _queue(self, write: QueuedWrite) -> None:
        if self.outbox is None:
            write.run()
        else:
            self.outbox.append(write)

    def decide(
        self,
        user_id: str | None = None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        candidates: Sequence[str] | None = None,
        decision_id: str | None = None,
        now: float | None = None,
    ) -> Decision:
        """The version's decision, logged with its version; nothing is kept in memory.

        With business rules (caps, budgets: counters in the log shared by every process) the
        decision, its counters and its row are written at once in one transaction, as the single
        process does, so caps stay exact across servers; without rules the write is queued for
        the worker's group commit."""
        if self.engine.rules is not None:
            outbox, self.outbox = self.outbox, None
            try:
                with self.log.transaction():
                    return self._decide(user_id, profile, candidates, decision_id, now)
            finally:
                self.outbox = outbox
        return self._decide(user_id, profile, candidates, decision_id, now)

    def _decide(
        self,
        user_id: str | None,
        profile: Mapping[str, Mapping[str, Any] | None] | None,
        candidates: Sequence[str] | None,
        decision_id: str | None,
        now: float | None,
    ) -> Decision:
        engine = self.engine
        if decision_id is not None and (
            decision_id in self.inflight.decisions or self.reads.has_decision(decision_id)
        ):
            raise ConflictError.for_field("decision_id", decision_id, "is already in use")
        t = engine.now() if now is None else now
        self.sync_behaviour(user_id)
        d = engine.decide(user_id, profile, candidates=candidates, decision_id=decision_id, now=t)
        engine.attribution.discard(d.decision_id)  # the learner joins its events, not us
        d = dataclasses.replace(d, policy_version=version_tag(d.policy_version, self.version))
        x, z = d.x, d.z
        if x is None or z is None:
            raise RuntimeError(f"decision {d.decision_id} came without its x and z")
        log, model_id = self.log, engine.model_id

        def write() -> None:
            try:
                log.log_decision(d, user_id=user_id, x=x, z=z, model_id=model_id)
            except StoreBusyError:
                raise
            except ValidationError as exc:
                if exc.field == "decision_id":  # another server logged the same id meanwhile
                    raise ConflictError.for_field(
                        "decision_id", d.decision_id, "is already in use"
                    ) from None
                raise RuntimeError(f"decision {d.decision_id} could not be logged: {exc}") from exc
            except BanditError as exc:
                raise RuntimeError(f"decision {d.decision_id} could not be logged: {exc}") from exc

        run: Callable[[], None] = write
        mode = d.mode
        if mode is not None:  # a rule or apprentice mode decided: logged beside the decision
            target = getattr(engine.policy, "target_propensity_", None)

            def write_with_mode() -> None:
                write()
                log.log_mode(d.decision_id, mode, target if mode.startswith("apprentice") else None)

            run = write_with_mode
        self._queue(QueuedWrite(run, decision=d.decision_id))
        return d

    def sync_behaviour(self, user_id: str | None) -> None:
        """Put the user's shared live-behaviour row (or none) into this copy of the engine, in
        place of the row the model version held and of this server's own impressions since."""
        shared, b = self.behaviour, self.engine.behaviour
        if shared is None or b is None or not isinstance(user_id, str) or not user_id:
            return  # (a bad user id is refused by the engine's decide)
        key = b.key(user_id)
        b.load_row(key, shared.row(key))

    def report(
        self,
        decision_id: str,
        type: str,
        *,
        value: float = 0.0,
        event_id: str | None = None,
        at: float | None = None,
    ) -> EventStatus:
        """Log an event for any server's decision, classified from the log (module docstring)."""
        if type not in ("click", "order"):
            raise ValidationError.for_field("type", type, "must be 'click' or 'order'")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValidationError.for_field("value", value, "must be a finite number >= 0")
        found = self.reads.decision_window(decision_id)
        if found is None:
            raise NotFoundError.for_field("decision_id", decision_id, "is not a known decision")
        ts, status, _ = found
        if event_id is not None and (
            (decision_id, event_id) in self.inflight.events
            or self.reads.has_event(decision_id, event_id)
        ):
            return "duplicate"
        t = self.engine.now() if at is None else float(at)
        t = max(t, ts)  # another server's clock may run a little behind the decider's
        late = status != "pending" or t > ts + self.engine.rewards.window
        verdict: EventStatus = "late" if late else "accepted"
        log = self.log

        def write() -> None:
            try:
                # the same event id stored meanwhile by another server is kept once; nobody needs
                # to know which, so PostgreSQL need not wait for the row (it goes with the commit)
                log.log_event(decision_id, type, float(value), t, event_id, verdict, wait=False)
            except StoreBusyError:
                raise
            except BanditError as exc:
                raise RuntimeError(f"event for {decision_id} could not be logged: {exc}") from exc

        key = None if event_id is None else (decision_id, event_id)
        self._queue(QueuedWrite(write, event=key))
        return verdict

    def advance(self, now: float | None = None) -> list[LearnedReward]:
        """Nothing: the learner closes windows."""
        return []

    def flush(self, now: float | None = None) -> list[LearnedReward]:
        """Nothing: the learner closes windows."""
        return []

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete the user's profile, logged rows and shared behaviour row, and this copy's (the
        log queues the user's key for the learner, which drops its in-memory row at its next step
        and publishes a version without it; what versions already published hold of the user's
        behaviour goes with them as they are pruned, ``keep_versions`` publications later)."""
        deleted: dict[str, int] = {}
        log = self.log

        def write() -> None:
            # queued like the decisions before it: one of the user's decisions still waiting for
            # the group commit cannot land after the forget
            deleted.update(log.forget_user(user_id))

        if self.behaviour is not None and self.engine.behaviour is not None:
            self.behaviour.forget(self.engine.behaviour.key(user_id))
        self.engine.forget_behaviour(user_id)
        self._queue(QueuedWrite(write))
        return deleted  # filled when the commit holding the forget returns

    def scrub(self) -> bool:
        """Truncate the log's WAL (a decision server writes no checkpoints)."""
        return self.log.truncate_wal()
