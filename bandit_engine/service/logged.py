"""``LoggedEngine``: an engine whose every decision, event, learned reward and catalog change is in the
event log, and which can be rebuilt from a checkpoint and that log.

One class does "engine + log" for every process that needs it: the HTTP server (which adds group
commit and timers around it) and the simulator's ``--log``. Each call does the engine's work and
writes what it did, in that order, on the log's connection; the caller decides the transaction
boundaries (the server commits a batch of requests at once, the simulator a block of rounds), and a
call outside any transaction commits on its own.

Learning is driven from here, not from a hook: the service turns the engine's ``auto_advance`` off
and closes due attribution windows itself, before each decision and after each event, exactly where
the engine would, so every reward it learns is returned by :meth:`LoggedEngine.advance` and logged.

Restart (:meth:`LoggedEngine.restore`)
--------------------------------------
1. Build the *base* engine (the ``--model`` file or the demo engine).
2. If the event log's lineage (``meta['engine_model_id']``) is this base engine's ``model_id``, load
   the newest readable checkpoint of that lineage (a corrupt one falls back to the previous).
3. **Roll the journal forward** from the checkpoint's seq: catalog changes in order, decisions with
   :meth:`Engine.redo_decision <bandit_engine.Engine.redo_decision>` (logged context, logged
   candidates, same random draws, verified to choose the logged bundle), events with
   :meth:`Engine.report <bandit_engine.Engine.report>` at their logged times; the rewards this
   re-learns are already in the log (the first record stands).

A base engine with another ``model_id`` starts a new lineage at the current end of the journal: its
decisions are not mixed with an older model's. Limitations: the engine's duplicate-event counter is
not restored exactly (a duplicate is not journaled), and a user forgotten after a checkpoint is not
rolled forward (forgetting wins over bit-identical state).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine import OPT_OUT_MODE, Engine
from ..errors import BanditError, ConflictError, ModelFileError, NotFoundError, StoreBusyError
from ..features.behaviour import KEY_BYTES
from ..profiles import CONSENT, PERSONALISATION, Profile, ProfileStore, check_consent
from ..records import Decision, LearnedReward
from ..rewards import EventStatus
from ..rules import Rules
from ..store import EventStore
from .admin import apply_admin
from .checkpoints import Checkpointer, RestoreReport
from .rule_store import LogRuleState

__all__ = ["AppliedOp", "LogProfiles", "LoggedEngine"]


def _behaviour_key(pseudonym: str) -> bytes:
    """A user's key in the engine's behaviour state: the first 12 bytes of the log's pseudonym
    (96 bits: a collision among a billion users has probability about 1e-11)."""
    return bytes.fromhex(pseudonym)[:KEY_BYTES]


logger = logging.getLogger("bandit_engine.service")


class LogProfiles:
    """The event log's profile table as an engine's profile store
    (:class:`~bandit_engine.profiles.ProfileSource`): profiles live under keyed pseudonyms, durable,
    and one ``forget`` removes them for the log and the engine alike."""

    def __init__(self, log: EventStore) -> None:
        self.log = log

    def get(self, user_id: str) -> Profile | None:
        stored = self.log.get_profile(user_id)
        return None if stored is None else {p: f for p, f in stored.items()}

    def put(self, user_id: str, profile: Mapping[str, Mapping[str, Any] | None]) -> None:
        for platform, fields in profile.items():
            if fields is not None:
                self.log.upsert_profile(user_id, platform, fields, replace=True)

    def upsert(
        self, user_id: str, platform: str, fields: Mapping[str, Any], *, replace: bool = False
    ) -> None:
        self.log.upsert_profile(user_id, platform, fields, replace=replace)

    def forget(self, user_id: str) -> bool:
        """Forget the user in the log: the profile and every logged row under the pseudonym."""
        return self.log.forget_user(user_id)["profiles"] > 0


@dataclass(frozen=True)
class AppliedOp:
    """A catalog change applied and journaled: its operation, its journal seq and the bundles it
    created."""

    op: str
    seq: int
    added_bundles: list[str]


class LoggedEngine:
    """An :class:`~bandit_engine.Engine` and its event log (an
    :class:`~bandit_engine.store.EventStore`), kept in step.

    Parameters
    ----------
    engine
        The engine. The service drives its learning: ``engine.auto_advance`` is set to ``False``.
    log
        The event log every call writes to.
    checkpoints
        Where :meth:`checkpoint` writes (optional: a simulator's log needs none).
    profiles_in_log
        Make the log's profile table the engine's profile store (:class:`LogProfiles`), as the
        server does. Otherwise the engine keeps its own store (in memory) and the log holds no
        profiles; :meth:`forget_user` clears both either way.
    on_learned
        Told of every reward learned and logged (metrics); logging does not depend on it.
    """

    def __init__(
        self,
        engine: Engine,
        log: EventStore,
        *,
        checkpoints: Checkpointer | None = None,
        profiles_in_log: bool = False,
        on_learned: Callable[[LearnedReward], None] | None = None,
    ) -> None:
        self.log = log
        self.on_learned = on_learned
        self.checkpoints = checkpoints
        self.profiles_in_log = profiles_in_log
        self.engine = engine
        #: apprentice mode's switch rule: called with the engine every ``apprentice_check_every``
        #: learned rewards while the rule is served; it switches the policy when the rule holds
        #: and returns an object with ``ready`` and ``reason`` (the server passes
        #: :func:`bandit_engine.evaluation.apprentice.check_switch`); ``None``: only when told
        self.apprentice_check: Callable[[Engine], Any] | None = None
        self.apprentice_check_every = 200
        self._learned_since_check = 0
        self._replaying = False
        self._attach(engine)

    def _attach(self, engine: Engine) -> None:
        engine.auto_advance = False
        if self.log.pseudonymizes:
            # holdout buckets are a hash of the log's keyed pseudonym: the same group for a user
            # on every server sharing the key, and after every restart
            engine.pseudonym_fn = self.log.pseudonym
        if engine.rules is not None and self.log.pseudonymizes:
            # caps, budgets and exclusions count in the log: shared by every serving process
            engine.rules.state = LogRuleState(self.log)
        if engine.behaviour is not None and self.log.pseudonymizes:
            # the live behaviour state is keyed by the log's pseudonym, so the journal names the
            # row a logged decision read and updated (roll_forward) and forgetting finds it
            log = self.log
            engine.behaviour.key_fn = lambda user_id: _behaviour_key(log.pseudonym(user_id))
        if self.profiles_in_log and not isinstance(engine.profiles, LogProfiles):
            held = engine.profiles
            store = LogProfiles(self.log)
            if isinstance(held, ProfileStore) and len(held):
                # profiles loaded in memory (the demo engine, Engine.build) move into the log, so
                # one store serves them and forgetting a user reaches them
                with self.log.transaction():
                    for user_id in held:
                        profile = held.get(user_id)
                        if profile is not None:
                            store.put(user_id, profile)
            engine.profiles = store
        self.engine = engine
        if not self.log.read_only:
            self.record_experiment()

    def record_experiment(self) -> None:
        """Keep in the log's ``meta`` what ``bandit report`` needs to read it: the holdout plan
        (``holdout_plan``: groups and configured shares, for the sample-ratio check) and the
        declared event types with their platforms (``event_types``). Written only when changed;
        a report reads the plan in force when it runs."""
        engine = self.engine
        plan = (
            "" if engine.holdout is None else json.dumps(engine.holdout.to_dict(), sort_keys=True)
        )
        types = json.dumps(
            {
                t: {
                    "platform": engine.rewards.platform_of(t),
                    "conversion": engine.rewards.is_conversion(t),
                }
                for t in engine.rewards.event_types
            },
            sort_keys=True,
        )
        for key, value in (("holdout_plan", plan), ("event_types", types)):
            if self.log.get_meta(key) != value:
                self.log.set_meta(key, value)

    def now(self) -> float:
        return self.engine.now()

    # -- the loop ---------------------------------------------------------------------------
    def decide(
        self,
        user_id: str | None = None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        candidates: Sequence[str] | None = None,
        decision_id: str | None = None,
        now: float | None = None,
    ) -> Decision:
        """:meth:`Engine.decide <bandit_engine.Engine.decide>`, then log the decision with its ``x``
        and ``z``. A ``decision_id`` already in the log (this engine's or another's) is a
        :class:`~bandit_engine.errors.ConflictError`."""
        if self.engine.rules is not None:
            # the rules' counters are read and incremented in the decision's transaction, which
            # every writer takes one at a time: caps and budgets stay exact across processes
            with self.log.transaction():
                return self._decide(user_id, profile, candidates, decision_id, now)
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
        if decision_id is not None and self.log.has_decision(decision_id):
            raise ConflictError.for_field("decision_id", decision_id, "is already in use")
        t = engine.now() if now is None else now
        self.advance(t)
        d = engine.decide(user_id, profile, candidates=candidates, decision_id=decision_id, now=t)
        x, z = d.x, d.z
        if x is None or z is None:  # an Engine's decisions always carry both
            raise RuntimeError(f"decision {d.decision_id} came without its x and z")
        try:
            # wait=False: the id was checked above or made up by the engine, and the write is in
            # the caller's transaction or its own; on PostgreSQL the row then travels with the
            # next round trip instead of costing one (a clash fails the whole transaction)
            self.log.log_decision(
                d, user_id=user_id, x=x, z=z, model_id=engine.model_id, wait=False
            )
        except StoreBusyError:
            raise  # retryable; the caller rolls back and rebuilds (the engine already decided)
        except BanditError as exc:  # the engine decided but the log refused: they now disagree
            raise RuntimeError(f"decision {d.decision_id} could not be logged: {exc}") from exc
        if d.mode is not None:
            target = getattr(engine.policy, "target_propensity_", None)
            self.log.log_mode(
                d.decision_id, d.mode, target if d.mode.startswith("apprentice") else None
            )
        return d

    def report(
        self,
        decision_id: str,
        type: str,
        *,
        value: float = 0.0,
        event_id: str | None = None,
        at: float | None = None,
    ) -> EventStatus:
        """:meth:`Engine.report <bandit_engine.Engine.report>`, then log the event with its status.

        A decision unknown to the log is a :class:`~bandit_engine.errors.NotFoundError` naming
        ``decision_id``, whatever the engine remembers."""
        self.engine.rewards.check_type(type)  # a malformed event is 422 whatever its decision
        if not self.log.has_decision(decision_id):
            raise NotFoundError.for_field("decision_id", decision_id, "is not a known decision")
        engine = self.engine
        t = engine.now() if at is None else at
        status = engine.report(decision_id, type, value=value, event_id=event_id, at=t)
        try:
            # the engine classified the event; whether the log already held the pair is not
            # needed here (it is stored once either way), so PostgreSQL need not wait for it
            self.log.log_event(decision_id, type, value, t, event_id, status, wait=False)
        except StoreBusyError:
            raise  # retryable; the caller rolls back and rebuilds (the engine already counted it)
        except BanditError as exc:
            raise RuntimeError(f"event for {decision_id} could not be logged: {exc}") from exc
        self.advance(t)
        return status

    def advance(self, now: float | None = None) -> list[LearnedReward]:
        """Close the attribution windows due by ``now``, learn from them and log what was learned.
        Returns the rewards this call logged."""
        return self._logged(self.engine.advance(now))

    def flush(self, now: float | None = None) -> list[LearnedReward]:
        """Close every pending decision now (end of a run), learn and log."""
        return self._logged(self.engine.flush(now))

    def _logged(self, learned: list[LearnedReward]) -> list[LearnedReward]:
        log, tell = self.log, self.on_learned
        out = [rec for rec in learned if log.log_learned(rec)]
        if tell is not None:
            for rec in out:
                tell(rec)
        check = self.apprentice_check
        if (
            learned
            and check is not None
            and getattr(self.engine.policy, "mode", None) == "rule"
            and not self._replaying
        ):
            self._learned_since_check += len(learned)
            if self._learned_since_check >= self.apprentice_check_every:
                self._learned_since_check = 0
                st = check(self.engine)
                if st.ready:
                    self._journal_switch(str(st.reason))
        return out

    # -- apprentice mode --------------------------------------------------------------------
    def use_rules(self, rules: Rules | None) -> None:
        """Apply business rules with their counters in this log (shared by every process serving
        from it); see :meth:`Engine.use_rules <bandit_engine.Engine.use_rules>`."""
        state = LogRuleState(self.log) if self.log.pseudonymizes else None
        self.engine.use_rules(rules, state)

    def _journal_switch(self, reason: str) -> int:
        seq = self.log.log_admin("apprentice_switch", {"reason": reason}, ts=self.engine.now())
        logger.info("apprentice mode switched to the learner (seq %d): %s", seq, reason)
        return seq

    def apprentice_switch(self, reason: str = "told") -> AppliedOp:
        """Switch apprentice mode to the learner now (journaled; a no-op when already switched)."""
        return self.apply("apprentice_switch", {"reason": reason})

    # -- catalog and profiles ---------------------------------------------------------------
    def apply(self, op: str, payload: Mapping[str, Any], *, now: float | None = None) -> AppliedOp:
        """Apply a catalog change (:data:`~bandit_engine.service.ADMIN_OPS`) and journal it."""
        added = apply_admin(self.engine, op, payload)
        seq = self.log.log_admin(op, payload, ts=self.engine.now() if now is None else now)
        return AppliedOp(op, seq, added)

    def upsert_profile(
        self, user_id: str, platform: str, fields: Mapping[str, Any], *, replace: bool = False
    ) -> dict[str, Any]:
        """Store a user's fields on one platform (in the log, and in the engine's own store when it
        keeps one); returns the fields the log now holds.

        The profile it would make is checked against the engine's schema first (platform, field
        names, value types): a bad one raises :class:`~bandit_engine.errors.ValidationError`
        naming ``<platform>.<field>`` and stores nothing, instead of breaking every later decision
        for the user."""
        engine = self.engine
        if platform == CONSENT:
            return dict(self.set_consent(user_id, fields))
        current = engine.profiles.get(user_id) or {}
        current = {p: f for p, f in current.items() if p != CONSENT}  # not a platform to check
        candidate = {p: dict(f) if f is not None else None for p, f in current.items()}
        if isinstance(fields, Mapping):
            base = {} if replace or candidate.get(platform) is None else candidate[platform]
            candidate[platform] = {**(base or {}), **fields}
        engine.features.transform_one(candidate, now=engine.now())
        stored = self.log.upsert_profile(user_id, platform, fields, replace=replace)
        if not self.profiles_in_log:
            self.engine.profiles.upsert(user_id, platform, fields, replace=replace)
        return stored

    def set_consent(self, user_id: str, consent: Mapping[str, Any]) -> dict[str, bool]:
        """Record a user's consent (scopes: the engine's platforms and ``"personalisation"``,
        ``True`` / ``False`` only) in the log, where the change is logged and a withheld
        platform's stored record deleted (:mod:`bandit_engine.store.consent`), and in the
        engine (:meth:`Engine.set_consent <bandit_engine.Engine.set_consent>`: an opt-out erases
        the live behaviour). Applies from the user's next decision; returns the whole record."""
        checked = check_consent(consent, self.engine.features.platform_names)
        record = self.log.set_consent(user_id, checked)
        if self.profiles_in_log:
            if checked.get(PERSONALISATION) is False:
                self.engine.forget_behaviour(user_id)
        else:
            self.engine.set_consent(user_id, checked)
        return record

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete the user's profile and logged rows (:meth:`EventLog.forget_user
        <bandit_engine.store.EventLog.forget_user>`), the profile the engine holds and the user's
        pending decisions (they will not be learned from, nor saved in a checkpoint).

        What the policy already learned from the user's past decisions stays in its statistics
        (sums over many users; unlearning them is not attempted). Call :meth:`scrub` after the
        transaction commits, so that no file keeps a copy."""
        ids = self.log.decision_ids_of(user_id)
        deleted = self.log.forget_user(user_id)
        self.engine.profiles.forget(user_id)
        self.engine.forget_behaviour(user_id)
        if self.engine.rules is not None:
            self.engine.rules.forget(user_id)
        attribution = self.engine.attribution
        pending = [d for d in ids if d in attribution and attribution.status(d) == "pending"]
        for decision_id in pending:
            attribution.discard(decision_id)
        return deleted

    def scrub(self) -> bool:
        """After forgetting (outside a transaction): truncate the log's WAL and replace every
        checkpoint by one of the engine as it is now. Returns ``False`` if another process's
        reader kept the WAL from being truncated (run it again later)."""
        if self.checkpoints is not None and self.checkpoints.list():
            self.checkpoints.keep_only(self.checkpoint())
        return self.log.truncate_wal()

    # -- checkpoints and restart ------------------------------------------------------------
    def checkpoint(self) -> Path:
        """Save the engine as the checkpoint of the journal's current end (between transactions:
        the engine then holds exactly the journal up to ``last_seq``)."""
        if self.checkpoints is None:
            raise ValueError("this LoggedEngine has no checkpoint folder")
        return self.checkpoints.save(self.engine, self.log, self.log.last_seq())

    def roll_forward(self, since: int) -> tuple[int, int, int, int]:
        """Redo the journal entries after ``since`` on the engine.

        Returns ``(decisions, events, admin ops, skipped entries)``. Decisions of another model and
        events of decisions this engine does not know are skipped. A decision that does not choose
        its logged bundle raises :class:`~bandit_engine.errors.ConflictError` (the checkpoint and the
        log disagree).
        """
        engine = self.engine
        if engine.rules is not None:
            # the journal's shows and orders were counted when they happened
            engine.rules.replaying = True
            try:
                return self._roll_forward(since)
            finally:
                engine.rules.replaying = False
        return self._roll_forward(since)

    def _roll_forward(self, since: int) -> tuple[int, int, int, int]:
        self._replaying = True  # switches are in the journal: none is decided while replaying
        try:
            return self._roll(since)
        finally:
            self._replaying = False

    def _roll(self, since: int) -> tuple[int, int, int, int]:
        engine = self.engine
        n_dec = n_ev = n_ad = n_skip = 0
        # decisions of opted-out users were chosen by the control policy: redone by it too
        opted_out = {
            str(m["decision_id"]) for m in self.log.decision_modes() if m["mode"] == OPT_OUT_MODE
        }
        for entry in self.log.entries_since(since):
            d = entry.data
            if entry.kind == "decision":
                if d["model_id"] != engine.model_id:
                    n_skip += 1
                    continue
                t = float(d["timestamp"])
                self.advance(t)
                user = d.get("user")
                control = d["decision_id"] in opted_out
                engine.redo_decision(
                    d["decision_id"],
                    d["x"],
                    d["candidates"],
                    now=t,
                    expected_bundle=d["bundle_id"],
                    user_key=(
                        _behaviour_key(user)
                        if user and engine.behaviour is not None and not control
                        else None
                    ),
                    group=d.get("group"),
                    mode=OPT_OUT_MODE if control else None,
                )
                n_dec += 1
            elif entry.kind == "event":
                if d["decision_id"] not in engine.attribution:
                    n_skip += 1
                    continue
                t = float(d["timestamp"])
                engine.report(
                    d["decision_id"],
                    d["type"],
                    value=float(d["value"]),
                    event_id=d["event_id"],
                    at=t,
                )
                self.advance(t)
                n_ev += 1
            elif entry.kind == "admin":
                apply_admin(engine, d["op"], d["payload"])
                n_ad += 1
            # learned rows are re-derived by advancing; the log keeps its first record of each
        return n_dec, n_ev, n_ad, n_skip

    @classmethod
    def restore(
        cls,
        base: Callable[[], Engine],
        log: EventStore,
        checkpoints: Checkpointer,
        *,
        clock: Callable[[], float] | None = None,
        profiles_in_log: bool = False,
        on_learned: Callable[[LearnedReward], None] | None = None,
        accept_rollback: bool = False,
    ) -> tuple[LoggedEngine, RestoreReport]:
        """The service a (re)started process should run (see the module docstring).

        ``base`` builds the base engine; ``clock`` replaces its clock (and that of a loaded
        checkpoint); the other arguments are the constructor's. When the journal between the
        newest usable checkpoint and its end was purged (``meta['purged_seq']``), the logged
        state cannot be reached: a :class:`~bandit_engine.errors.ConflictError` says so unless
        ``accept_rollback``."""
        options: dict[str, Any] = {
            "checkpoints": checkpoints,
            "profiles_in_log": profiles_in_log,
            "on_learned": on_learned,
        }
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        engine = base()
        if clock is not None:
            engine.clock = clock
        lineage = log.get_meta("engine_model_id")
        if lineage != engine.model_id:
            start = log.last_seq()
            if lineage is not None:
                logger.warning(
                    "event log lineage %s differs from the served model %s: starting a new lineage "
                    "at seq %d (older decisions are not rolled forward)",
                    lineage,
                    engine.model_id,
                    start,
                )
            log.set_meta("engine_model_id", engine.model_id)
            log.set_meta("engine_base_seq", str(start))
            service = cls(engine, log, **options)
            return service, RestoreReport(None, start, 0, 0, 0, 0, True)
        base_seq = int(log.get_meta("engine_base_seq") or 0)
        since = base_seq
        used: str | None = None
        for seq, path in checkpoints.list():
            if seq < base_seq:
                break
            try:
                loaded = Engine.load(path, **kwargs)
            except ModelFileError as exc:
                logger.warning(
                    "checkpoint %s is unreadable (%s); trying an older one", path.name, exc
                )
                continue
            if loaded.model_id != engine.model_id:
                continue
            engine, since, used = loaded, seq, str(path)
            break
        purged = int(log.get_meta("purged_seq") or 0)
        if purged > since:
            message = (
                f"the journal was purged up to seq {purged}, but the newest usable checkpoint "
                f"covers only up to seq {since} ({used or 'none: the base model'}): starting "
                "would silently lose what was learned in between"
            )
            if not accept_rollback:
                raise ConflictError(
                    f"{message}; restore a newer checkpoint, or start with --accept-rollback to "
                    "accept the loss",
                    field="journal",
                )
            logger.warning("%s (accepted)", message)
        service = cls(engine, log, **options)
        try:
            with log.transaction():  # one commit for every learned row the roll-forward re-derives
                n_dec, n_ev, n_ad, n_skip = service.roll_forward(since)
        except ConflictError as exc:
            raise ConflictError(
                f"rolling the event log forward from seq {since} failed: {exc.message}",
                field="journal",
            ) from None
        return service, RestoreReport(used, since, n_dec, n_ev, n_ad, n_skip, False)
