"""The learner role: one process tails the event log, joins events to decisions, learns, and
publishes model versions for the decision servers (the Decision Service split of Agarwal et al.,
"Making contextual decisions with low technical debt", 2016).

What it does, per step (:meth:`Learner.step`)
---------------------------------------------
1. Read the journal after its position (outside any lock, in batches): decisions of its lineage
   become pending (their logged ``x``, ``z``, propensity and bundle: the learner never re-decides),
   events join them (``accepted`` inside the window, ``late`` after it or after the decision
   closed, ``duplicate`` for an event id seen before), catalog changes are applied, and the live
   behaviour state observes decisions and accepted events as the single-process engine does.
2. In one write transaction, which holds the journal (no other writer commits meanwhile) and first
   checks the lease (:mod:`~bandit_engine.store.lease`): read what was committed since step 1,
   close every decision whose window ended more than ``grace`` seconds ago, write their learned
   rows (:meth:`~bandit_engine.store.EventLog.log_learned`: a decision is learned at most once,
   whoever tries) and the new position. A learner that lost its lease rolls back here.
3. After the commit, update the policy from the closed decisions, in the order of their learned
   rows.
4. Every ``publish_interval`` seconds, when something changed: publish a model version (the engine
   without pending decisions, with the position it covers).

Shared state: in step 2's transaction the learner also writes each live-behaviour row that
changed to the log's ``user_behaviour`` table (decision servers read it per request, so a click
reaches every server's next decision within the learner's poll and lag, not a publish interval
later), after dropping the rows of users forgotten meanwhile (``behaviour_forgets``). In apprentice
mode it counts the rule's decisions and the learner's logged probability of each (agreement,
off-policy rows, :mod:`bandit_engine.evaluation.apprentice`), and journals the switch when
``apprentice_check`` says the rule holds.

Why the order makes replay exact: the learned rows of a step follow, in the journal, every entry
the step had read, and nothing else is committed in between. So replaying the journal in order,
closing each decision at its learned row with the logged reward (:meth:`Learner.replay`), applies
the same policy updates in the same order: the state a learner holds is a function of the log.
A learner taking over (or restarting after a failed write) loads the newest version, rebuilds the
decisions pending at its position from the log (:meth:`~bandit_engine.store.EventLog.pending_as_of`)
and replays from there, learned rows of its predecessor included.

Limits (honest): an event whose decision server commits it more than ``grace`` seconds after its
timestamp (a writer stuck on a lock) may find its decision closed and count as late. The
behaviour block's hourly expiry sweep runs at the learner's clock and is not replayed (expired
rows read as empty either way, so decisions do not depend on it). Grid policies learn through
their pair update, as in the engine.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._version import __version__
from ..engine import Engine
from ..errors import BanditError, ConflictError
from ..features.behaviour import KEY_BYTES
from ..fileformat import dump_state, load_state
from ..policies.apprentice import ApprenticePolicy
from ..records import LearnedReward
from ..rewards import RewardSpec
from ..store import EventStore, JournalEntry
from ..store.lease import LearnerLease
from .admin import apply_admin

__all__ = ["Learner", "LearnerStats", "LeaseLostError", "PendingSet"]

logger = logging.getLogger("bandit_engine.learner")
_SWEEP_EVERY = 3600.0
_SYNCED = "behaviour_shared"  # meta key: every behaviour row of the learner is in the table


class LeaseLostError(ConflictError):
    """Another learner holds the role now: this one's write was rolled back."""


@dataclass
class _Open:
    """A decision waiting for its window to close, as the learner holds it."""

    timestamp: float
    deadline: float
    x: np.ndarray
    bundle_id: str
    z: np.ndarray
    propensity: float
    user_key: bytes | None
    row: int
    reward_sum: float = 0.0
    n_events: int = 0
    event_ids: set[str] | None = None
    group: str | None = None  # holdout group that chose: its policy learns the reward
    target_p: float | None = None  # apprentice mode: the learner's p of the rule's choice
    k: int = 0  # candidates the decision chose among (the off-policy estimate's stratum)


@dataclass(frozen=True)
class _Closed:
    decision_id: str
    open: _Open
    reward: float
    status: str
    n_events: int
    closed_at: float


class PendingSet:
    """The learner's pending decisions: the attribution rules of
    :class:`~bandit_engine.rewards.Attribution` (window, reward, duplicates, late events) over
    decisions it did not make, with closing a given decision in O(1) (a replayed learned row)."""

    def __init__(self, spec: RewardSpec) -> None:
        self.spec = spec
        self._open: dict[str, _Open] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._n = 0

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._open

    def add(self, decision_id: str, item: _Open) -> None:
        if decision_id in self._open:
            return  # seen already (a batch boundary read twice): the first stands
        self._open[decision_id] = item
        self._n += 1
        heapq.heappush(self._heap, (item.deadline, self._n, decision_id))

    def event(
        self, decision_id: str, type: str, t: float, value: float, event_id: str | None
    ) -> str | None:
        """The event's status for the learner (``None``: not one of its pending decisions)."""
        item = self._open.get(decision_id)
        if item is None:
            return None
        if event_id is not None:
            if item.event_ids is None:
                item.event_ids = set()
            elif event_id in item.event_ids:
                return "duplicate"
            item.event_ids.add(event_id)
        if t > item.deadline:
            return "late"
        item.reward_sum += self.spec.event_reward(type, value)
        item.n_events += 1
        return "accepted"

    def _closed(self, decision_id: str, item: _Open, now: float) -> _Closed:
        if item.n_events:
            return _Closed(
                decision_id, item, self.spec.total(item.reward_sum), "learned", item.n_events, now
            )
        return _Closed(decision_id, item, self.spec.default_reward, "default", 0, now)

    def close_due(self, now: float) -> list[_Closed]:
        """Close every decision whose window ended strictly before ``now``, earliest first."""
        out = []
        heap = self._heap
        while heap and heap[0][0] < now:
            _, _, decision_id = heapq.heappop(heap)
            item = self._open.pop(decision_id, None)
            if item is not None:  # else closed from a learned row already
                out.append(self._closed(decision_id, item, now))
        return out

    def pop(self, decision_id: str) -> _Open | None:
        """Remove a decision (closed by a logged learned row); its heap entry is skipped later."""
        return self._open.pop(decision_id, None)

    def oldest_deadline(self) -> float:
        while self._heap and self._heap[0][2] not in self._open:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else math.inf


@dataclass
class LearnerStats:
    """What the learner's metrics report."""

    position: int = 0
    head: int = 0
    version: int = 0
    version_created_at: float = 0.0
    published: int = 0
    learned: int = 0
    takeovers: int = 0
    failures: int = 0
    last_step_at: float = 0.0
    leader: bool = False


def _learn_one(engine: Engine, item: _Open, reward: float) -> None:
    """One policy update from a closed decision, as :meth:`Engine.advance` makes it."""
    grid = engine.grid
    if grid is not None:
        kd = grid.deal_width
        deal_id, course_id = engine.catalog.parts(item.bundle_id)
        engine.policy.update_pair(  # type: ignore[attr-defined]
            deal_id,
            course_id,
            item.z[:kd],
            item.z[kd:-2],
            int(item.z[-2]),
            int(item.z[-1]),
            reward,
            item.propensity,
        )
    else:
        # a holdout group's decision teaches its own policy only (bandit_engine/holdout.py)
        policy = engine.policy_of(item.group)
        if item.target_p is not None and isinstance(policy, ApprenticePolicy):
            # one row of the off-policy estimate of the learner on the rule's traffic, from what
            # the decision server logged (it decided; this process never calls choose). With
            # business rules, k counts the logged candidates, not only those the rules left.
            policy._add_eval_row(item.target_p, item.propensity, reward, float(item.k))
        policy.update(item.x, item.bundle_id, item.z, reward, item.propensity)
    engine.n_learned += 1


def _apprentice_decided(engine: Engine, group: str | None, target_p: float | None) -> None:
    """A rule decision of apprentice mode, as :meth:`ApprenticePolicy.choose` counts it."""
    policy = engine.policy_of(group)
    if isinstance(policy, ApprenticePolicy) and policy.mode == "rule":
        policy.n_rule_decisions_ += 1
        if target_p is not None:
            policy.agreement_.append(target_p)


class Learner:
    """The one learner of an event log (see the module docstring).

    Parameters
    ----------
    base
        Builds the base engine (the ``--model`` file or the demo engine) when no version is
        published yet; its ``model_id`` is the lineage learned.
    log
        The event log (opened read-write; the learner needs no HMAC key).
    lease
        The role's lock (:func:`~bandit_engine.store.lease.open_lease`).
    grace
        Seconds past a window's end before the learner closes it (for events committed late).
    publish_interval
        Seconds between published versions (when something changed).
    keep_versions
        How many versions the store keeps.
    batch
        Journal entries read per query while catching up.
    clock
        Wall clock (epoch seconds).
    apprentice_check
        Apprentice mode's switch rule (:func:`bandit_engine.evaluation.apprentice.status` or one
        with other thresholds): called with the engine every ``apprentice_check_every`` learned
        decisions while the rule is served; when its result is ``ready`` the learner journals the
        switch (the admin op ``apprentice_switch``) and the next version carries it to the
        decision servers. ``None``: only a switch journaled by a server (told) switches.
    apprentice_check_every
        Learned decisions between two checks.
    share_behaviour
        Write every live-behaviour row the learner changes to the log's ``user_behaviour`` table
        (in its fenced write transaction, at each step), which decision servers read per request.
    """

    def __init__(
        self,
        base: Callable[[], Engine],
        log: EventStore,
        lease: LearnerLease,
        *,
        grace: float = 2.0,
        publish_interval: float = 2.0,
        keep_versions: int = 5,
        batch: int = 5_000,
        clock: Callable[[], float] = time.time,
        apprentice_check: Callable[[Engine], Any] | None = None,
        apprentice_check_every: int = 200,
        share_behaviour: bool = True,
    ) -> None:
        for name, value in (("grace", grace), ("publish_interval", publish_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                from ..errors import ConfigError

                raise ConfigError.for_field(name, value, "must be a number >= 0")
        self.base = base
        self.log = log
        self.lease = lease
        self.grace = float(grace)
        self.publish_interval = float(publish_interval)
        self.keep_versions = int(keep_versions)
        self.batch = int(batch)
        self.clock = clock
        self.apprentice_check = apprentice_check
        self.apprentice_check_every = int(apprentice_check_every)
        self.share_behaviour = bool(share_behaviour)
        self._learned_since_check = 0
        #: behaviour keys whose row changed since the last write to the shared table
        self._dirty: set[bytes] = set()
        self._republish = False  # a forgotten user's row left: publish without waiting
        self.stats = LearnerStats()
        self.engine: Engine | None = None
        self.pending: PendingSet | None = None
        self.position = 0
        self._published_position = -1
        self._last_publish = -math.inf
        self._last_renew = -math.inf
        self._swept_at = -math.inf

    # -- state from the log ------------------------------------------------------------------
    def _load(self) -> None:
        """Newest version + the decisions pending at its position (or the base engine at 0)."""
        info = self.log.latest_version()
        data = None if info is None else self.log.version_state(info.version)
        if info is not None and data is not None:
            engine = Engine.from_state(load_state(data, f"model version {info.version}"))
            position = info.log_seq
            self.stats.version, self.stats.version_created_at = info.version, info.created_at
        else:
            engine = self.base()
            position = 0
        engine.auto_advance = False
        self.engine = engine
        self.pending = PendingSet(engine.rewards)
        self.position = position
        self._dirty = set()
        decisions, events = self.log.pending_as_of(position, engine.model_id)
        for entry in decisions:
            self._add_decision(entry, observe=False)
        for entry in events:
            self._event(entry, observe=False)
        self._published_position = position if info is not None else -1
        self.stats.position = position

    @classmethod
    def replay(cls, base: Callable[[], Engine], log: EventStore, until: int) -> Engine:
        """The engine a learner holds at journal position ``until``, rebuilt from the base engine
        and the log alone (decisions, events, catalog changes and learned rows up to ``until``)."""
        learner = cls(base, log, _NoLease())
        engine = base()
        engine.auto_advance = False
        learner.engine, learner.pending = engine, PendingSet(engine.rewards)
        position = 0
        while position < until:
            end = min(until, position + learner.batch)
            learner._apply(log.tail(position, end))
            position = end
        return engine

    def _add_decision(self, entry: JournalEntry, *, observe: bool = True) -> None:
        engine, pending = self.engine, self.pending
        assert engine is not None and pending is not None
        d = entry.data
        if d["model_id"] != engine.model_id:
            return
        user = d.get("user")
        key = bytes.fromhex(user)[:KEY_BYTES] if user and engine.behaviour is not None else None
        row = -1
        if engine.behaviour is not None:
            try:
                row = engine.catalog.row(d["bundle_id"])
            except BanditError:
                row = -1
        t = float(d["timestamp"])
        item = _Open(
            t,
            t + engine.rewards.window,
            d["x"],
            str(d["bundle_id"]),
            d["z"],
            float(d["propensity"]),
            key,
            row,
            group=d.get("group"),
            target_p=d.get("target_p") if d.get("mode") == "apprentice:rule" else None,
            k=int(d.get("n_candidates") or 0),
        )
        pending.add(str(d["decision_id"]), item)
        if observe and d.get("mode") == "apprentice:rule":
            _apprentice_decided(engine, item.group, item.target_p)
        if observe and key is not None and row >= 0 and engine.behaviour is not None:
            engine.behaviour.observe_decision(key, row, t)
            self._dirty.add(key)

    def _event(self, entry: JournalEntry, *, observe: bool = True) -> None:
        engine, pending = self.engine, self.pending
        assert engine is not None and pending is not None
        d = entry.data
        did = str(d["decision_id"])
        status = pending.event(
            did, str(d["type"]), float(d["timestamp"]), float(d["value"]), d["event_id"]
        )
        if status == "accepted" and observe and engine.behaviour is not None:
            item = pending._open[did]
            if item.user_key is not None and item.row >= 0:
                engine.behaviour.observe_event(
                    item.user_key, item.row, str(d["type"]), float(d["timestamp"])
                )
                self._dirty.add(item.user_key)

    def _apply(self, entries: Iterable[JournalEntry]) -> int:
        """Apply journal entries in order; learned rows close their decision with the logged
        reward (a predecessor's, or any when replaying). Returns how many were applied."""
        engine, pending = self.engine, self.pending
        assert engine is not None and pending is not None
        n = 0
        for entry in entries:
            n += 1
            if entry.kind == "decision":
                self._add_decision(entry)
            elif entry.kind == "event":
                self._event(entry)
            elif entry.kind == "learned":
                item = pending.pop(str(entry.data["decision_id"]))
                if item is not None:
                    _learn_one(engine, item, float(entry.data["reward"]))
            elif entry.kind == "admin":
                try:
                    apply_admin(engine, entry.data["op"], entry.data["payload"])
                except BanditError as exc:  # refused the same way in every replay
                    logger.warning("catalog change at seq %d not applied: %s", entry.seq, exc)
        return n

    # -- the role ----------------------------------------------------------------------------
    @property
    def leader(self) -> bool:
        return self.stats.leader

    def try_lead(self) -> bool:
        """Take the role if it is free; on success load the state from the store."""
        if self.stats.leader:
            return True
        if not self.lease.acquire():
            return False
        self.stats.leader = True
        self.stats.takeovers += 1
        self._last_renew = time.monotonic()
        try:
            self._load()
        except BaseException:
            self.resign()
            raise
        logger.info(
            "learner %s took the role at position %d (version %d, %d pending)",
            self.lease.holder,
            self.position,
            self.stats.version,
            len(self.pending or ()),
        )
        if self.stats.version == 0:
            self.publish(force=True)  # the base engine is version 1
        if self.share_behaviour and self.log.get_meta(_SYNCED) != "1":
            self._share_all()
        return True

    # -- the shared behaviour rows -----------------------------------------------------------
    def _share_all(self) -> None:
        """Once per log: write every behaviour row the learner holds (a log that a learner of
        an older library served has rows only inside its model versions)."""
        engine = self.engine
        assert engine is not None
        with self.log.transaction():
            self._fence()
            if engine.behaviour is not None:
                self._dirty.update(engine.behaviour.index)
                self._write_behaviour()
            self.log.set_meta(_SYNCED, "1")

    def _write_behaviour(self) -> int:
        """In the caller's fenced transaction: drop the rows of users forgotten meanwhile, then
        write the changed rows. Returns how many were written."""
        engine, log = self.engine, self.log
        assert engine is not None
        b = engine.behaviour
        for key_hex in log.take_behaviour_forgets():
            # the user's decisions are gone from the log: nothing re-creates the row, and the
            # next version (published at once) no longer holds it
            key = bytes.fromhex(key_hex)
            if b is not None:
                b.load_row(key, None)
                self._republish = True
            self._dirty.discard(key)
        if b is None or not self.share_behaviour:
            self._dirty.clear()
            return 0
        rows = []
        for key in self._dirty:
            data = b.export_row(key)
            if data is not None:
                rows.append((key.hex(), b.width, data))
        self._dirty.clear()
        return log.put_behaviour(rows, seq=self.position)

    def resign(self) -> None:
        """Stop being the learner (the next one takes over)."""
        self.stats.leader = False
        try:
            self.lease.release()
        except Exception:
            logger.debug("lease release failed (it will expire)", exc_info=True)

    def _fence(self, position: int | None = None) -> None:
        if not self.lease.renew(position):
            self.stats.leader = False
            raise LeaseLostError("the learner lease is held by another learner now", field="lease")
        self._last_renew = time.monotonic()

    def step(self) -> int:
        """One round (module docstring). Returns the journal entries read plus decisions learned
        (0: nothing to do). Raises :class:`LeaseLostError` when the role was lost, and
        :class:`~bandit_engine.errors.StoreBusyError` when the log failed (call :meth:`recover`)."""
        engine, pending, log = self.engine, self.pending, self.log
        assert engine is not None and pending is not None and self.stats.leader
        n = 0
        head = log.last_seq()
        while self.position < head:  # catch up outside the lock
            end = min(head, self.position + self.batch)
            n += self._apply(log.tail(self.position, end))
            self.position = end
            if time.monotonic() - self._last_renew > self.lease.ttl / 3:
                with log.transaction():
                    self._fence(self.position)
        watermark = self.clock() - self.grace
        due = pending.oldest_deadline() < watermark
        renew = time.monotonic() - self._last_renew > self.lease.ttl / 3
        shared = bool(self._dirty) or log.has_behaviour_forgets()
        kept: list[_Closed] = []
        if due or renew or shared:
            with log.transaction():
                self._fence()
                head = log.last_seq()
                n += self._apply(log.tail(self.position, head))
                self.position = head
                self._write_behaviour()
                for c in pending.close_due(watermark) if due else ():
                    rec = LearnedReward(
                        c.decision_id,
                        c.open.bundle_id,
                        c.reward,
                        c.status,  # type: ignore[arg-type]
                        c.n_events,
                        c.closed_at,
                    )
                    if log.log_learned(rec):  # else forgotten meanwhile: not learned
                        kept.append(c)
                self._fence(head + len(kept))
            self.position = head + len(kept)
            for c in kept:
                _learn_one(engine, c.open, c.reward)
            self._check_apprentice(len(kept))
        if engine.behaviour is not None and watermark - self._swept_at >= _SWEEP_EVERY:
            engine.behaviour.sweep(watermark)
            self._swept_at = watermark
        self.stats.position = self.position
        self.stats.head = max(head, self.position)
        self.stats.learned += len(kept)
        self.stats.last_step_at = self.clock()
        if self._republish or time.monotonic() - self._last_publish >= self.publish_interval:
            self.publish(force=self._republish)
            self._republish = False
        return n + len(kept)

    def _check_apprentice(self, learned: int) -> None:
        """Run the switch rule every ``apprentice_check_every`` learned decisions while the rule
        is served; when it holds, journal the switch and apply it from the journal (so a replay
        switches at the same place)."""
        engine, log = self.engine, self.log
        assert engine is not None
        check = self.apprentice_check
        policy = engine.policy
        if not learned or check is None or not isinstance(policy, ApprenticePolicy):
            return
        if policy.mode != "rule":
            return
        self._learned_since_check += learned
        if self._learned_since_check < self.apprentice_check_every:
            return
        self._learned_since_check = 0
        st = check(engine)
        if not getattr(st, "ready", False):
            return
        with log.transaction():
            self._fence()
            head = log.last_seq()
            self._apply(log.tail(self.position, head))
            self.position = head
            seq = log.log_admin(
                "apprentice_switch",
                {"reason": str(getattr(st, "reason", "ready"))},
                ts=self.clock(),
            )
            self._fence(seq)
        self._apply(log.tail(self.position, seq))
        self.position = seq
        logger.info("apprentice mode switched to the learner (seq %d): %s", seq, st.reason)
        self.publish(force=True)  # the decision servers serve the learner from the next version

    def publish(self, *, force: bool = False) -> int | None:
        """Publish the engine as a new model version (when its position moved, or ``force``)."""
        engine = self.engine
        assert engine is not None
        if not force and self.position == self._published_position:
            return None
        # the fastest deflate level: a version is written every publish_interval and read
        # once per decision server; level 1 took 73-85 ms against 111-128 ms for the demo engine's
        # learned LinUCB, 6% larger (benchmarks/README.md, issue 12)
        data = dump_state(engine.to_state(), library_version=__version__, compresslevel=1)
        now = self.clock()
        with self.log.transaction():
            self._fence(self.position)
            version = self.log.publish_version(
                data,
                log_seq=self.position,
                model_id=engine.model_id,
                policy_version=engine.policy_version,
                n_learned=engine.n_learned,
                learner=self.lease.holder,
                keep=self.keep_versions,
                now=now,
            )
        self._published_position = self.position
        self._last_publish = time.monotonic()
        self.stats.version, self.stats.version_created_at = version, now
        self.stats.published += 1
        return version

    def recover(self) -> None:
        """After a failed write: the in-memory state may be ahead of the log; reload it."""
        self.stats.failures += 1
        if self.stats.leader:
            self._load()

    def run(self, stop: threading.Event, *, poll: float = 0.2, lease_poll: float = 1.0) -> None:
        """Serve the role until ``stop`` is set: wait for the lease, then step; publish a final
        version and release the lease on the way out."""
        while not stop.is_set():
            try:
                if not self.stats.leader and not self.try_lead():
                    stop.wait(lease_poll)
                    continue
                if self.step() < self.batch:  # else still catching up: go on at once
                    stop.wait(poll)
            except LeaseLostError:
                logger.warning(
                    "learner %s lost the role; waiting to take it again", self.lease.holder
                )
                stop.wait(lease_poll)
            except Exception:
                logger.exception("learner step failed; reloading from the store")
                stop.wait(lease_poll)
                try:
                    self.recover()
                except Exception:
                    logger.exception("reload failed; resigning")
                    self.resign()
        if self.stats.leader:
            try:
                self.step()
                self.publish()
            except Exception:
                logger.exception("final publish failed")
            self.resign()


class _NoLease:
    """The lease of a replay (it writes nothing)."""

    holder = "replay"
    ttl = math.inf

    def acquire(self) -> bool:
        return True

    def renew(self, position: int | None = None) -> bool:
        return True

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None
