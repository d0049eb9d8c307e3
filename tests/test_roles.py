"""The split roles in one process: decision servers that decide with a published model version,
one learner that learns each decision exactly once, a lease with take-over, versions that only go
up, a replay of the log that reproduces the learner, and 503 when the log cannot be reached.

Both backends where the behaviour is shared (``db_target``: SQLite and PostgreSQL). The
multi-process version (kill -9 under load) is ``tests/reliability/test_roles_kill9.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from reliability.engine_factory import small_engine

from bandit_engine.demo import demo_engine
from bandit_engine.engine import Engine
from bandit_engine.errors import NotFoundError
from bandit_engine.fileformat import load_state
from bandit_engine.server import Secret, ServerSettings
from bandit_engine.server.roles import open_decision_server
from bandit_engine.service.decider import DecisionService
from bandit_engine.service.learner import Learner, LeaseLostError
from bandit_engine.store import EventStore, open_log
from bandit_engine.store.lease import open_lease

KEY = b"roles-test-hmac-key-0123456789abcdef"
TOKEN = "roles-test-token-0123456789abcdefgh"
WINDOW = 30.0
USERS = ["u1", "u2", "u3", "u4", "u5", "nobody"]


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _small() -> Engine:
    return small_engine(window=WINDOW)


def _demo() -> Engine:
    # the demo schema has the live behaviour block: the learner keeps it from the log
    return demo_engine(seed=3, policy="pair_ucb", start_time=1_700_000_000.0)


def _policy_arrays(engine: Engine) -> dict[str, Any]:
    state = engine.policy.get_state()
    return {k: v for k, v in state.items() if k != "rng"}


def _assert_same_policy(a: Engine, b: Engine) -> None:
    sa, sb = _policy_arrays(a), _policy_arrays(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        va, vb = sa[k], sb[k]
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            assert np.array_equal(np.asarray(va), np.asarray(vb)), k
        else:
            assert va == vb, k


def _server(
    log: EventStore, version: int, base: Callable[[], Engine], clock: Clock, index: int
) -> DecisionService:
    info = log.latest_version()
    if version and info is not None:
        data = log.version_state(info.version)
        assert data is not None
        engine = Engine.from_state(load_state(data, "test"), clock=clock)
        return DecisionService(engine, log, version=info.version, server_index=index)
    engine = base()
    engine.clock = clock
    return DecisionService(engine, log, version=0, server_index=index)


@pytest.mark.parametrize("base", [_small, _demo], ids=["linucb", "pair_ucb_behaviour"])
def test_learner_learns_each_decision_once_and_replay_reproduces_it(
    db_target: str, base: Callable[[], Engine]
) -> None:
    clock = Clock()
    window = base().rewards.window
    # two decision servers, each with a connection of its own (as two processes have)
    log_a = open_log(db_target, hmac_key=KEY)
    log_b = open_log(db_target, hmac_key=KEY)
    learner_log = open_log(db_target, hmac_key=None)
    try:
        users = USERS if base is _small else [f"U{i:06d}" for i in range(1, 40)]
        server_a = _server(log_a, 0, base, clock, 0)  # version 0: moves the profiles into the log
        learner = Learner(
            base,
            learner_log,
            open_lease(learner_log),
            grace=1.0,
            publish_interval=3600,
            clock=clock,
        )
        assert learner.try_lead()
        assert learner_log.latest_version() is not None  # the base engine is version 1
        server_a = _server(log_a, 1, base, clock, 0)
        server_b = _server(log_b, 1, base, clock, 1)
        decided: list[str] = []
        for round_ in range(3):
            for i, user in enumerate(users):
                server = server_a if i % 2 else server_b
                d = server.decide(user)
                assert d.policy_version.endswith(f"@v{server.version}")
                decided.append(d.decision_id)
                if i % 3 == 0:  # the event goes to the other server
                    other = server_b if server is server_a else server_a
                    assert other.report(d.decision_id, "click", event_id=f"e{i}") == "accepted"
                    assert other.report(d.decision_id, "click", event_id=f"e{i}") == "duplicate"
                clock.t += 0.5
            learner.step()
            clock.t += window + 2.0  # every window of this round closes (grace 1 s)
            learner.step()
            learner.publish()
            server_a = _server(log_a, 1, base, clock, 0)
            server_b = _server(log_b, 1, base, clock, 1)
            assert server_a.version == learner.stats.version == 2 + round_
        # exactly once: every decision closed, one learned row each, as many updates
        for did in decided:
            assert log_a.decision(did)["status"] in ("learned", "default")
        counts = log_a.counts()
        assert counts["learned"] == len(decided)
        assert learner.engine is not None
        assert learner.engine.n_learned == len(decided)
        # a learned decision's later event is late, and learns nothing more
        assert server_a.report(decided[0], "click", event_id="after") == "late"
        with pytest.raises(NotFoundError):
            server_a.report("no-such-decision", "click")
        # the replay of the log reproduces the learner's policy
        replayed = Learner.replay(base, learner_log, learner.position)
        _assert_same_policy(replayed, learner.engine)
        assert replayed.n_learned == learner.engine.n_learned
        # and the published version is that state too
        info = learner_log.latest_version()
        assert info is not None and info.log_seq == learner.position
        versions = [v.version for v in learner_log.versions()]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
    finally:
        for lg in (log_a, log_b, learner_log):
            lg.close()


def test_one_learner_at_a_time_and_take_over(db_target: str) -> None:
    clock = Clock()
    log_a = open_log(db_target, hmac_key=None)
    log_b = open_log(db_target, hmac_key=None)
    servers_log = open_log(db_target, hmac_key=KEY)
    try:
        server = _server(servers_log, 0, _small, clock, 0)
        lease_a = open_lease(log_a, "learner-a", ttl=0.6)
        lease_b = open_lease(log_b, "learner-b", ttl=0.6)
        a = Learner(_small, log_a, lease_a, grace=0.0, clock=clock)
        b = Learner(_small, log_b, lease_b, grace=0.0, clock=clock)
        assert a.try_lead()
        assert not b.try_lead()  # one learner at a time
        ids = [server.decide(u).decision_id for u in USERS]
        clock.t += WINDOW + 1.0
        a.step()
        a.publish()
        ids += [server.decide(u).decision_id for u in USERS]
        clock.t += WINDOW + 1.0
        a.step()  # learned rows after the last version: b must replay them
        # a dies without a word: its SQLite lease expires / its PostgreSQL session ends
        if hasattr(lease_a, "_drop"):
            lease_a._drop()
        start = time.monotonic()
        while not b.try_lead():
            assert time.monotonic() - start < 10.0, "no take-over within 10 s"
            time.sleep(0.1)
        assert log_b.lease_row().holder == "learner-b"
        # a paused learner that wakes up finds out at its next write, which is rolled back
        ids += [server.decide(u).decision_id for u in USERS]
        clock.t += WINDOW + 1.0
        before = log_a.counts()["learned"]
        with pytest.raises(LeaseLostError):
            a.step()
        assert log_a.counts()["learned"] == before
        b.step()
        assert b.engine is not None
        assert log_b.counts()["learned"] == len(ids) == b.engine.n_learned
        _assert_same_policy(Learner.replay(_small, log_b, b.position), b.engine)
        b.publish()
        newest = log_b.latest_version()
        assert newest is not None and newest.learner == "learner-b"
        assert newest.log_seq == b.position and newest.n_learned == len(ids)
        versions = [v.version for v in log_b.versions()]
        assert versions == sorted(set(versions))  # strictly increasing across the take-over
    finally:
        for lg in (log_a, log_b, servers_log):
            lg.close()


def test_a_forgotten_users_pending_decision_is_not_learned(tmp_path: Path) -> None:
    clock = Clock()
    db = str(tmp_path / "f.sqlite")
    slog = open_log(db, hmac_key=KEY)
    llog = open_log(db, hmac_key=None)
    try:
        server = _server(slog, 0, _small, clock, 0)
        learner = Learner(_small, llog, open_lease(llog), grace=0.0, clock=clock)
        assert learner.try_lead()
        server.decide("u1")
        kept = server.decide("u2").decision_id
        learner.step()  # both are pending in the learner
        server.forget_user("u1")
        clock.t += WINDOW + 1.0
        learner.step()
        assert llog.counts()["learned"] == 1 and slog.decision(kept)["status"] != "pending"
        assert learner.engine is not None and learner.engine.n_learned == 1
    finally:
        slog.close()
        llog.close()


def _settings(tmp: Path, db: str, **kw: Any) -> ServerSettings:
    model = tmp / "model.bandit"
    if not model.exists():
        _small().save(model)
    return ServerSettings(
        db=db, api_token=Secret(TOKEN.encode()), model=str(model), role="decide", **kw
    )


def test_decision_server_loads_newer_versions_and_reports_their_age(tmp_path: Path) -> None:
    db = str(tmp_path / "v.sqlite")
    clock = Clock()
    app, log = open_decision_server(
        _settings(tmp_path, db, refresh_interval=0.05), hmac_key=KEY, clock=clock
    )
    llog = open_log(db, hmac_key=None)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(app) as c:
            r = c.post("/v1/decisions", json={"user_id": "u1"}, headers=auth)
            assert r.status_code == 200 and r.json()["policy_version"].endswith("@v0")
            learner = Learner(_small, llog, open_lease(llog), grace=0.0, clock=clock)
            assert learner.try_lead()  # publishes version 1
            deadline = time.monotonic() + 10
            while app.state.worker.current.version < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            r = c.post("/v1/decisions", json={"user_id": "u2"}, headers=auth)
            assert r.json()["policy_version"].endswith("@v1")
            row = log.decision(r.json()["decision_id"])
            assert row["policy_version"] == r.json()["policy_version"]
            text = c.get("/metrics", headers=auth).text
            assert "bandit_model_version 1" in text
            age = float(text.split("\nbandit_model_age_seconds ")[1].split()[0])
            assert 0 <= age < 60
    finally:
        app.state.reader.close()
        log.close()
        llog.close()


def test_a_decision_server_that_cannot_write_answers_503_and_logs_nothing(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "locked.sqlite")
    app, log = open_decision_server(_settings(tmp_path, db, busy_timeout=0.2), hmac_key=KEY)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(app) as c:
            assert c.post("/v1/decisions", json={"user_id": "u1"}, headers=auth).status_code == 200
            before = log.counts()["decisions"]
            blocker = sqlite3.connect(db, timeout=0.01)
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                r = c.post(
                    "/v1/decisions", json={"user_id": "u2", "decision_id": "d-x"}, headers=auth
                )
                assert r.status_code == 503 and r.headers["Retry-After"] == "1"
                assert "decision_id" not in r.json()
                assert c.get("/readyz").status_code == 503
            finally:
                blocker.rollback()
                blocker.close()
            assert log.counts()["decisions"] == before
            assert not log.has_decision("d-x")
            r = c.post("/v1/decisions", json={"user_id": "u2", "decision_id": "d-x"}, headers=auth)
            assert r.status_code == 200  # served again once the log is back
    finally:
        app.state.reader.close()
        log.close()


def test_begin_if_free_takes_the_write_lock_only_when_nobody_holds_it(db_target: str) -> None:
    a = open_log(db_target, hmac_key=KEY)
    b = open_log(db_target, hmac_key=KEY, busy_timeout=5.0)
    try:
        if db_target.startswith("postgresql"):
            assert b.begin_if_free() is False  # cannot tell without a round trip: never
            return
        import threading

        a.begin()
        started = time.perf_counter()
        assert b.begin_if_free() is False
        assert time.perf_counter() - started < 1.0  # at once, not after busy_timeout (5 s)
        # busy_timeout is back: an ordinary write waits for the lock instead of failing
        release = threading.Timer(0.3, a.commit)
        release.start()
        b.set_meta("probe", "1")
        release.join()
        assert time.perf_counter() - started >= 0.25
        assert b.begin_if_free() is True
        b.set_meta("probe", "2")  # joins the open transaction
        b.commit()
        assert a.get_meta("probe") == "2"
    finally:
        a.close()
        b.close()


def test_a_decision_server_waits_for_a_write_lock_held_elsewhere_and_then_answers(
    tmp_path: Path,
) -> None:
    """A batch that finds the lock taken is written from a helper thread once it is free; the
    request is answered only after that commit (the loop is not blocked meanwhile)."""
    import threading

    db = str(tmp_path / "held.sqlite")
    app, log = open_decision_server(_settings(tmp_path, db, busy_timeout=10.0), hmac_key=KEY)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(app) as c:
            assert c.post("/v1/decisions", json={"user_id": "u1"}, headers=auth).status_code == 200
            blocker = sqlite3.connect(db, timeout=0.01, check_same_thread=False)
            blocker.execute("BEGIN IMMEDIATE")
            release = threading.Timer(0.5, blocker.rollback)
            release.start()
            started = time.perf_counter()
            r = c.post("/v1/decisions", json={"user_id": "u2", "decision_id": "d-w"}, headers=auth)
            waited = time.perf_counter() - started
            release.join()
            blocker.close()
            assert r.status_code == 200 and r.json()["decision_id"] == "d-w"
            assert waited >= 0.4  # answered after the lock was released and the row committed
            assert log.has_decision("d-w")
    finally:
        app.state.reader.close()
        log.close()


def test_a_decision_server_whose_postgresql_schema_is_gone_answers_503(
    tmp_path: Path, pg_url: str
) -> None:
    import psycopg

    app, log = open_decision_server(_settings(tmp_path, pg_url, busy_timeout=2.0), hmac_key=KEY)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    schema = pg_url.split("search_path%3D")[1].split("&")[0]
    try:
        with TestClient(app) as c:
            assert c.post("/v1/decisions", json={"user_id": "u1"}, headers=auth).status_code == 200
            with psycopg.connect(pg_url.split("?")[0], autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
            r = c.post("/v1/decisions", json={"user_id": "u2"}, headers=auth)
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            assert "bundle_id" not in r.json()
    finally:
        app.state.reader.close()
        log.close()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["serve-policy", "--role", "leader"], "role"),
        (["serve-policy", "--workers", "0"], "workers"),
        (["serve-policy", "--dev", "--workers", "2"], "dev"),
        (["serve-policy", "--role", "learner", "--workers", "2", "--db", "x.sqlite"], "workers"),
        (["learn", "--db", "x.sqlite", "--keep-versions", "0"], "keep_versions"),
        (["learn", "--db", "x.sqlite", "--lease-ttl", "0"], "lease_ttl"),
    ],
)
def test_role_options_are_checked_before_anything_starts(
    args: list[str], field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bandit_engine.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BANDIT_API_TOKEN", TOKEN)
    monkeypatch.setenv("BANDIT_HMAC_KEY", KEY.hex())
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert field in result.output
    assert not (tmp_path / "x.sqlite").exists()  # nothing was created


def test_forget_through_a_decision_server_reaches_every_logged_row(tmp_path: Path) -> None:
    db = str(tmp_path / "forget.sqlite")
    app, log = open_decision_server(_settings(tmp_path, db), hmac_key=KEY)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(app) as c:
            did = c.post("/v1/decisions", json={"user_id": "u1"}, headers=auth).json()
            assert (
                c.post(
                    "/v1/events",
                    json={"decision_id": did["decision_id"], "type": "click", "event_id": "e1"},
                    headers=auth,
                ).json()["status"]
                == "accepted"
            )
            r = c.post("/v1/admin/users/forget", json={"user_id": "u1"}, headers=auth)
            assert r.status_code == 200
            assert r.json()["deleted"]["decisions"] == 1 and r.json()["deleted"]["events"] == 1
            assert log.decision_ids_of("u1") == [] and log.get_profile("u1") is None
    finally:
        app.state.reader.close()
        log.close()


def test_a_version_1_log_is_upgraded_with_the_role_tables(db_target: str) -> None:
    from bandit_engine.store import SCHEMA_VERSION

    open_log(db_target, hmac_key=KEY).close()
    drop = ["DROP TABLE model_versions", "DROP TABLE learner_lease"]
    back = "UPDATE meta SET value = '1' WHERE key = 'schema_version'"
    if db_target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_target, autocommit=True) as conn:
            for sql in [*drop, back]:
                conn.execute(sql)
    else:
        lite = sqlite3.connect(db_target)
        for sql in [*drop, back]:
            lite.execute(sql)
        lite.commit()
        lite.close()
    with open_log(db_target, hmac_key=KEY) as log:  # what an older library wrote, opened by this
        assert log.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert log.latest_version() is None and log.lease_row().holder is None


def test_caps_hold_across_decision_servers(tmp_path: Path) -> None:
    from bandit_engine.errors import NoOfferError, ValidationError
    from bandit_engine.rules import Rules

    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[caps]]\nname = "deal_once"\nper = "deal"\nmax_shows = 1\nwindow_days = 1\n'
    )
    db = str(tmp_path / "caps.sqlite")
    clock = Clock()
    logs = [open_log(db, hmac_key=KEY) for _ in range(2)]
    try:
        servers = []
        for i, lg in enumerate(logs):
            server = _server(lg, 0, _small, clock, i)
            server.use_rules(Rules.from_toml(rules_file))  # counters in the shared log
            servers.append(server)
        deals = []
        for k in range(8):  # u1 (shanghai) may see d1, d2 and d4 (no city): each once
            # refused once every eligible deal was shown
            with contextlib.suppress(NoOfferError, ValidationError):
                deals.append(servers[k % 2].decide("u1").deal_id)
            clock.t += 1.0
        assert sorted(deals) == sorted(set(deals)) and 2 <= len(deals) <= 3, deals
        assert logs[0].counts()["decisions"] == len(deals)
    finally:
        for lg in logs:
            lg.close()


def test_the_learner_serves_its_lag_and_role_as_metrics(tmp_path: Path) -> None:
    import socket
    import urllib.error
    import urllib.request

    from bandit_engine.server.roles import serve_learner_metrics

    db = str(tmp_path / "m.sqlite")
    clock = Clock()
    slog = open_log(db, hmac_key=KEY)
    llog = open_log(db, hmac_key=None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = None
    try:
        server = _server(slog, 0, _small, clock, 0)
        learner = Learner(_small, llog, open_lease(llog), grace=0.0, clock=clock)
        assert learner.try_lead()
        for user in USERS:
            server.decide(user)
        learner.stats.head = slog.last_seq()  # what the next step would see: 6 entries unread
        http = serve_learner_metrics(learner, "127.0.0.1", port, token=b"metrics-token")
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=5)
        assert denied.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Bearer metrics-token"})
        text = urllib.request.urlopen(req, timeout=5).read().decode()
        assert "\nbandit_learner_leader 1\n" in text
        assert "\nbandit_learner_lag_entries 6\n" in text
        assert "\nbandit_model_version 1\n" in text and "bandit_decisions_total" not in text
        learner.step()
        text = urllib.request.urlopen(req, timeout=5).read().decode()
        assert "\nbandit_learner_lag_entries 0\n" in text
    finally:
        if http is not None:
            http.shutdown()
        slog.close()
        llog.close()


def test_the_learner_reads_encrypted_contexts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 15: contexts are sealed in the log; the learner opens them with the same key
    monkeypatch.setenv("BANDIT_ENCRYPTION_KEY", "ab" * 32)
    db = str(tmp_path / "sealed.sqlite")
    clock = Clock()
    slog = open_log(db, hmac_key=KEY)
    llog = open_log(db, hmac_key=None)
    try:
        server = _server(slog, 0, _small, clock, 0)
        learner = Learner(_small, llog, open_lease(llog), grace=0.0, clock=clock)
        assert learner.try_lead()
        ids = [server.decide(u).decision_id for u in USERS]
        raw = sqlite3.connect(db).execute("SELECT x, x_dim FROM decisions LIMIT 1").fetchone()
        assert len(raw[0]) != 8 * raw[1]  # sealed, not the plain float64 blob
        clock.t += WINDOW + 1.0
        learner.step()
        assert learner.engine is not None and learner.engine.n_learned == len(ids)
        _assert_same_policy(Learner.replay(_small, llog, learner.position), learner.engine)
        # the learner's reader opens each context as the log's own reader does
        ours = {
            e.data["decision_id"]: e.data["x"]
            for e in llog.tail(0, llog.last_seq())
            if e.kind == "decision"
        }
        theirs = {
            e.data["decision_id"]: e.data["x"]
            for e in llog.entries_since(0)
            if e.kind == "decision"
        }
        assert ours.keys() == theirs.keys() == set(ids)
        assert all(np.array_equal(ours[k], theirs[k]) for k in ids)
    finally:
        slog.close()
        llog.close()
