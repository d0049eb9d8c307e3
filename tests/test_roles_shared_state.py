"""Issue 12, per-user state shared by the split roles: the live behaviour the learner keeps is read
by every decision server from the log (a click accepted by one server reaches another server's
next decision within the documented bound), forgetting a user removes it from the log and from
the learner, and apprentice mode runs across roles (the servers serve the rule, the learner
learns from the rule's propensities, decides the switch and journals it; the servers pick it up
with the next version).

Both backends (``db_target``: SQLite and PostgreSQL), decision servers and the learner as objects
on connections of their own (as separate processes have them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from reliability.engine_factory import small_engine
from test_roles import Clock

from bandit_engine.demo import demo_engine
from bandit_engine.engine import Engine
from bandit_engine.evaluation.apprentice import SwitchThresholds, status
from bandit_engine.fileformat import load_state
from bandit_engine.policies.apprentice import ApprenticePolicy
from bandit_engine.server import Secret, ServerSettings
from bandit_engine.service.decider import DecisionService, SharedBehaviour
from bandit_engine.service.learner import Learner
from bandit_engine.store import EventStore, open_log
from bandit_engine.store.lease import open_lease

KEY = b"shared-state-hmac-key-0123456789abcd"
T0 = 1_700_000_000.0


def _demo() -> Engine:
    # the demo schema declares the live behaviour block (features/behaviour.py)
    return demo_engine(seed=3, policy="pair_ucb", start_time=T0)


class Mono:
    """A monotonic clock the test moves (the read cache's)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _same(a: Any, b: Any, where: str = "state") -> None:
    """Deep equality of policy states (nested dicts of arrays and numbers), random generators
    aside (the learner never draws: a replay's base engine has other seeds than the version's)."""
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            if k != "rng":
                _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(np.asarray(a), np.asarray(b)), where
    else:
        assert a == b, where


def _version_server(
    log: EventStore, clock: Clock, index: int, cache: SharedBehaviour | None = None
) -> DecisionService:
    info = log.latest_version()
    assert info is not None
    data = log.version_state(info.version)
    assert data is not None
    engine = Engine.from_state(load_state(data, "test"), clock=clock)
    return DecisionService(engine, log, version=info.version, server_index=index, behaviour=cache)


def _clicks(service: DecisionService, user: str) -> float:
    """The user's decayed click count in the server's copy of the behaviour state, as its last
    decision read it (log1p of it is the user feature ``clicks``)."""
    b = service.engine.behaviour
    assert b is not None
    out = np.zeros(6)
    b.user_vector(b.key(user), service.engine.now(), out)
    return float(np.expm1(out[2]))


@pytest.fixture
def logs(db_target: str) -> Iterator[tuple[EventStore, EventStore, EventStore]]:
    # two decision servers and the learner, each on a connection of its own
    opened = [open_log(db_target, hmac_key=KEY), open_log(db_target, hmac_key=KEY)]
    opened.append(open_log(db_target, hmac_key=None))
    try:
        yield opened[0], opened[1], opened[2]
    finally:
        for lg in opened:
            lg.close()


def test_a_click_accepted_by_one_server_reaches_the_other_servers_next_decision(
    logs: tuple[EventStore, EventStore, EventStore],
) -> None:
    log_a, log_b, llog = logs
    clock = Clock(T0)
    DecisionService(_demo(), log_a, version=0)  # moves the demo profiles into the log
    learner = Learner(_demo, llog, open_lease(llog), grace=1.0, publish_interval=3600, clock=clock)
    assert learner.try_lead()
    mono = Mono()
    server_a = _version_server(log_a, clock, 0)
    server_b = _version_server(log_b, clock, 1, SharedBehaviour(log_b, ttl=1.0, clock=mono))
    user = "U000007"
    server_b.decide(user)  # reads the user's (empty) row and caches it
    assert _clicks(server_b, user) == 0.0
    d = server_a.decide(user)
    clock.t += 1.0
    assert server_a.report(d.decision_id, "click", event_id="c1") == "accepted"
    learner.step()  # the learner observes the click and writes the user's row at once
    assert llog.behaviour_count() >= 1
    # no new model version was published (interval 3600 s): the row comes from the table
    assert learner.stats.version == 1 == server_b.version
    # within the cache's ttl server B may still decide from the row it read before the click ...
    server_b.decide(user)
    assert _clicks(server_b, user) == 0.0
    # ... and once ttl has passed its next decision sees the click
    mono.t += 1.0
    server_b.decide(user)
    assert _clicks(server_b, user) == pytest.approx(1.0, rel=1e-3)  # decayed over seconds only
    assert server_b.behaviour is not None and server_b.behaviour.n_reads == 2
    # a server's own impressions never replace the learner's row: its next read restores it
    b = server_b.engine.behaviour
    assert b is not None
    key = b.key(user)
    shared = log_b.behaviour_of(key.hex())
    assert shared is not None and b.export_row(key) != shared[1]  # + this decision's impression
    mono.t += 1.0
    server_b.sync_behaviour(user)
    assert b.export_row(key) == shared[1]


def test_the_shared_row_equals_the_learners_and_a_version_0_server_reads_it(
    logs: tuple[EventStore, EventStore, EventStore],
) -> None:
    log_a, _, llog = logs
    clock = Clock(T0)
    server = DecisionService(_demo(), log_a, version=0)
    server.engine.clock = clock
    learner = Learner(_demo, llog, open_lease(llog), grace=1.0, publish_interval=3600, clock=clock)
    assert learner.try_lead()
    users = [f"U{i:06d}" for i in range(1, 12)]
    for i, user in enumerate(users):
        d = server.decide(user)
        if i % 2:
            server.report(d.decision_id, "click", event_id="c")
        clock.t += 0.5
    learner.step()
    assert learner.engine is not None and learner.engine.behaviour is not None
    lb = learner.engine.behaviour
    assert llog.behaviour_count() == len(users) == len(lb)
    for user in users:
        key = bytes.fromhex(log_a.pseudonym(user))[:12]
        found = log_a.behaviour_of(key.hex())
        assert found is not None and found == (lb.width, lb.export_row(key))


def test_forget_removes_the_users_row_from_the_log_the_learner_and_the_next_version(
    logs: tuple[EventStore, EventStore, EventStore],
) -> None:
    log_a, _, llog = logs
    clock = Clock(T0)
    DecisionService(_demo(), log_a, version=0)
    learner = Learner(_demo, llog, open_lease(llog), grace=1.0, publish_interval=3600, clock=clock)
    assert learner.try_lead()
    server = _version_server(log_a, clock, 0)
    gone, kept = "U000011", "U000012"
    for user in (gone, kept):
        d = server.decide(user)
        server.report(d.decision_id, "click", event_id="c")
    learner.step()
    key_gone = bytes.fromhex(log_a.pseudonym(gone))[:12]
    key_kept = bytes.fromhex(log_a.pseudonym(kept))[:12]
    assert log_a.behaviour_of(key_gone.hex()) is not None
    # a decision the learner has not read yet, then the forget
    server.decide(gone)
    deleted = server.forget_user(gone)
    assert deleted["behaviour"] == 1 and deleted["decisions"] == 2
    assert log_a.behaviour_of(key_gone.hex()) is None
    assert log_a.has_behaviour_forgets()  # a learner serves this log: it is told
    before = learner.stats.version
    learner.step()
    assert learner.engine is not None and learner.engine.behaviour is not None
    assert key_gone not in learner.engine.behaviour.index  # dropped from the learner's memory
    assert key_kept in learner.engine.behaviour.index
    assert not log_a.has_behaviour_forgets()
    assert log_a.behaviour_of(key_gone.hex()) is None  # and not written back
    assert log_a.behaviour_of(key_kept.hex()) is not None
    # a version without the user was published at once
    assert learner.stats.version == before + 1
    data = llog.version_state(learner.stats.version)
    assert data is not None
    published = Engine.from_state(load_state(data, "test"))
    assert published.behaviour is not None and key_gone not in published.behaviour.index
    # nothing re-creates the row later
    clock.t += 3 * 86_400
    learner.step()
    assert log_a.behaviour_of(key_gone.hex()) is None


def test_a_log_without_a_learner_queues_no_forget(tmp_path: Any) -> None:
    with open_log(str(tmp_path / "solo.sqlite"), hmac_key=KEY) as log:
        assert log.forget_user("someone")["behaviour"] == 0
        assert not log.has_behaviour_forgets()  # nobody would ever drop the queued key


def test_shared_rows_are_sealed_with_encryption_at_rest(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cryptography")
    import sqlite3

    monkeypatch.setenv("BANDIT_ENCRYPTION_KEY", "ab" * 32)
    db = str(tmp_path / "sealed.sqlite")
    row = np.arange(7, dtype="<f4").tobytes() + np.arange(3, dtype="<f8").tobytes()
    with open_log(db, hmac_key=KEY) as log:
        key = log.pseudonym("alice")[:24]
        log.put_behaviour([(key, 7, row)], seq=0)
        assert log.behaviour_of(key) == (7, row)
    con = sqlite3.connect(db)
    stored = bytes(con.execute("SELECT state FROM user_behaviour").fetchone()[0])
    con.close()
    assert len(stored) == len(row) + 33 and row not in stored
    monkeypatch.delenv("BANDIT_ENCRYPTION_KEY")
    from bandit_engine.errors import DataError

    with open_log(db, hmac_key=KEY) as log, pytest.raises(DataError, match="BANDIT_ENCRYPTION"):
        log.behaviour_of(key)


def test_the_read_cache_checks_its_settings() -> None:
    from bandit_engine.errors import ValidationError

    with pytest.raises(ValidationError, match="ttl must be"):
        SharedBehaviour(None, ttl=-1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="max_entries must be"):
        SharedBehaviour(None, max_entries=0)  # type: ignore[arg-type]


# -- apprentice mode across roles -------------------------------------------------------------
WINDOW = 30.0


def _apprentice() -> Engine:
    engine = small_engine(window=WINDOW)
    # a uniform rule: every candidate has the rule's probability 1/k, so the off-policy
    # estimate has support everywhere
    engine.policy = ApprenticePolicy(rule="uniform", learner=engine.policy)
    return engine


@dataclass
class _Ready:
    """The switch rule's verdict as the learner reads it (``ready``, ``reason``)."""

    ready: bool
    reason: str


def _check_after(n: int, seen: list[Any]) -> Callable[[Engine], _Ready]:
    """The real status (recorded), and "ready" once ``n`` rule decisions were evaluated: the
    learner's part (journal the switch when the rule holds) is what is tested here; the rule
    itself is tested in tests/test_apprentice.py."""

    def check(engine: Engine) -> _Ready:
        st = status(engine, SwitchThresholds(min_decisions=1))
        seen.append(st)
        return _Ready(st.evaluated >= n, f"{st.evaluated} evaluated")

    return check


def test_apprentice_mode_across_roles(logs: tuple[EventStore, EventStore, EventStore]) -> None:
    log_a, log_b, llog = logs
    clock = Clock(T0)
    seen: list[Any] = []
    learner = Learner(
        _apprentice,
        llog,
        open_lease(llog),
        grace=1.0,
        publish_interval=3600,
        clock=clock,
        apprentice_check=_check_after(40, seen),
        apprentice_check_every=10,
    )
    assert learner.try_lead()
    servers = [_version_server(log_a, clock, 0), _version_server(log_b, clock, 1)]
    users = ["u1", "u2", "u3", "u4", "u5", "nobody"]
    decided = 0
    for round_ in range(4):
        for i in range(12):
            server = servers[i % 2]
            d = server.decide(users[i % len(users)])
            decided += 1
            # the servers serve the rule: its choice, its propensity
            assert d.mode == "apprentice:rule"
            assert d.propensity == pytest.approx(1.0 / len(d.candidates))
            if i % 3 == 0:
                servers[1 - i % 2].report(d.decision_id, "click", event_id=f"e{round_}-{i}")
            clock.t += 0.5
        learner.step()
        clock.t += WINDOW + 2.0
        learner.step()
        assert learner.engine is not None
        ap = learner.engine.policy
        assert isinstance(ap, ApprenticePolicy)
        if ap.mode == "policy":
            break
        # the learner learned from the rule's logged propensities and the servers' p_L
        assert ap.n_rule_decisions_ == decided
        assert len(ap.eval_rows_) == learner.engine.n_learned == decided
        rows = np.asarray(ap.eval_rows_)
        # (p_L(a_rule) as the server logged it, the uniform rule's propensity 1/k, the reward,
        # k the candidates it chose among)
        assert np.all((rows[:, 0] > 0) & (rows[:, 0] <= 1))
        assert np.all(rows[:, 3] >= 2) and np.allclose(rows[:, 1], 1.0 / rows[:, 3])
        learner.publish()
        servers = [_version_server(log_a, clock, 0), _version_server(log_b, clock, 1)]
    assert learner.engine is not None
    ap = learner.engine.policy
    assert isinstance(ap, ApprenticePolicy) and ap.mode == "policy"
    assert seen and all(math.isfinite(st.agreement) for st in seen)
    # the switch is in the journal and in the version published with it
    switches = [e for e in llog.entries_since(0) if e.kind == "admin"]
    assert [e.data["op"] for e in switches] == ["apprentice_switch"]
    servers = [_version_server(log_a, clock, 0), _version_server(log_b, clock, 1)]
    for server in servers:
        assert server.version == learner.stats.version
        assert server.decide("u1").mode == "apprentice:policy"
    # a replay of the log reproduces the learner, the switch at its place included
    replayed = Learner.replay(_apprentice, llog, learner.position)
    _same(replayed.policy.get_state(), learner.engine.policy.get_state())


def test_a_switch_told_to_a_decision_server_reaches_the_learner_and_every_server(
    logs: tuple[EventStore, EventStore, EventStore],
) -> None:
    log_a, log_b, llog = logs
    clock = Clock(T0)
    learner = Learner(_apprentice, llog, open_lease(llog), grace=1.0, clock=clock)
    assert learner.try_lead()
    server_a = _version_server(log_a, clock, 0)
    assert server_a.decide("u1").mode == "apprentice:rule"
    server_a.apprentice_switch("told")  # journaled (the admin endpoint's path)
    learner.step()
    learner.publish()
    assert learner.engine is not None
    assert getattr(learner.engine.policy, "mode", None) == "policy"
    server_b = _version_server(log_b, clock, 1)
    assert server_b.decide("u2").mode == "apprentice:policy"


def test_decision_servers_accept_apprentice_mode(tmp_path: Any) -> None:
    settings = ServerSettings(
        db=str(tmp_path / "a.sqlite"),
        api_token=Secret(b"shared-state-token-0123456789abcdefgh"),
        role="decide",
        apprentice="uniform",
    )
    assert settings.apprentice == "uniform"  # was refused before the split roles ran it
