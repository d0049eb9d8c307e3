"""The service, the HTTP server and the CLI on a PostgreSQL event log.

The same traffic gives the same engine whichever backend logged it: a LoggedEngine restored from a
PostgreSQL log equals one restored from SQLite, and a server on PostgreSQL that was killed half-way
and restarted ends where a SQLite server that never stopped does. Then ``bandit serve-policy --db
postgresql://...`` as a real process, and the maintenance commands on a URL. Needs the PostgreSQL
server of ``conftest.PG_URL`` (skips without it, fails under ``CI=true``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from reliability.engine_factory import save_small_engine
from reliability.proc import HMAC_KEY, TOKEN, ServerProcess
from test_server_restart import KEY, Clock, assert_same, run, script, settled
from test_server_restart import TOKEN as RESTART_TOKEN
from typer.testing import CliRunner

from bandit_engine.cli import app as cli
from bandit_engine.demo import demo_engine
from bandit_engine.engine import Engine
from bandit_engine.records import Decision
from bandit_engine.server import Secret, ServerSettings, open_server
from bandit_engine.service import Checkpointer, LoggedEngine
from bandit_engine.store import open_log

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_engine(tmp_path_factory.mktemp("model") / "model.bandit", window=30.0)


def _with_password(url: str) -> str:
    """``url`` with a password the trust-authenticated test server ignores: whatever prints the
    URL must hide it."""
    return url.replace("postgresql://postgres@", "postgresql://postgres:pg-s3cret-pw@")


def _comparable(engine: Engine) -> dict[str, Any]:
    state = engine.to_state()
    state["engine"].pop("n_duplicates")  # not journaled (documented), so not replayed
    return state


def _across_builds(state: dict[str, Any]) -> dict[str, Any]:
    """What two separately built engines share: each build draws its own behaviour secret (the
    server keys behaviour by the log's pseudonym, so the rows still match)."""
    if state.get("behaviour"):
        state["behaviour"] = {k: v for k, v in state["behaviour"].items() if k != "secret"}
    return state


def test_logged_engine_restored_from_postgres_equals_one_restored_from_sqlite(
    tmp_path: Path, pg_url: str
) -> None:
    base: Callable[[], Engine] = lambda: demo_engine(seed=0, start_time=T0, clock=lambda: T0)  # noqa: E731
    restored = []
    for name, target in (("sqlite", str(tmp_path / "a.sqlite")), ("postgres", pg_url)):
        rng = np.random.default_rng(11)
        with open_log(target, hmac_key=KEY) as log:
            cps = Checkpointer(tmp_path / f"cps-{name}")
            service, report = LoggedEngine.restore(base, log, cps)
            assert report.new_lineage
            for i in range(60):
                t = T0 + 60.0 * i
                user = f"U{1 + int(rng.integers(2000)):06d}"
                d = service.decide(user, decision_id=f"dec{i}", now=t)
                if rng.random() < 0.3:
                    service.report(d.decision_id, "click", at=t + 1, event_id=f"c{i}")
                if i == 30:
                    service.advance(t)
                    service.checkpoint()  # the rest lives only in the journal
            service.advance(T0 + 3600.0)
            again, report = LoggedEngine.restore(base, log, cps)
            assert report.checkpoint is not None and report.redone_decisions == 29
            assert_same(_comparable(service.engine), _comparable(again.engine))
            restored.append(_across_builds(_comparable(again.engine)))
    assert_same(restored[0], restored[1])


def _settings(db: str, tmp: Path, model: Path, **kw: Any) -> ServerSettings:
    return ServerSettings(
        db=db,
        api_token=Secret(RESTART_TOKEN.encode()),
        model=str(model),
        checkpoint_dir=str(tmp / "cps"),
        advance_interval=0.05,
        **kw,
    )


def test_server_on_postgres_killed_and_restarted_ends_where_sqlite_never_stopped(
    tmp_path: Path, pg_url: str, model: Path
) -> None:
    ops = script()
    clock = Clock()
    app, log = open_server(
        _settings(str(tmp_path / "ref.sqlite"), tmp_path / "ref", model), hmac_key=KEY, clock=clock
    )
    with TestClient(app) as c:
        run(c, clock, ops)
        reference = settled(c, app)
        ref_counts = log.counts()
    log.close()

    clock = Clock()
    half = len(ops) // 2
    url = _with_password(pg_url)
    settings = _settings(url, tmp_path / "pg", model)
    assert "pg-s3cret-pw" not in repr(settings)
    app, log = open_server(settings, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        run(c, clock, ops[:half])
        c.portal.call(app.state.worker.kill)  # no final checkpoint: only the log survives
    log.close()
    app, log = open_server(settings, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        run(c, clock, ops[half:])
        state = settled(c, app)
        d = c.get("/v1/decisions/dec0", headers={"Authorization": f"Bearer {RESTART_TOKEN}"})
        assert d.status_code == 200 and d.json()["decision_id"] == "dec0"
        assert c.get("/readyz").status_code == 200
        counts = log.counts()
    log.close()
    assert counts == ref_counts
    assert_same(reference, state)


def test_serve_policy_on_a_postgres_url_as_a_real_process(
    tmp_path: Path, pg_url: str, model: Path
) -> None:
    url = _with_password(pg_url)
    server = ServerProcess(
        model=model,
        db=url,  # type: ignore[arg-type]  (the helper passes it on as text)
        log_path=tmp_path / "server.log",
        extra=["--checkpoint-dir", str(tmp_path / "cps")],
    ).start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        ids = []
        with httpx.Client(base_url=server.url, headers=auth, timeout=10.0) as http:
            for i in range(20):
                r = http.post("/v1/decisions", json={"user_id": f"user{i % 4}"})
                assert r.status_code == 200, r.text
                ids.append(r.json()["decision_id"])
            for did in ids[:5]:
                r = http.post("/v1/events", json={"decision_id": did, "type": "click"})
                assert r.status_code == 202, r.text
            r = http.get(f"/v1/decisions/{ids[0]}")
            assert r.status_code == 200 and len(r.json()["events"]) == 1
    finally:
        code = server.stop()
    assert code == 0
    output = server.log_path.read_text()
    assert "pg-s3cret-pw" not in output and "postgres:***@" in output
    with open_log(pg_url, hmac_key=HMAC_KEY.encode(), read_only=True) as log:
        counts = log.counts()
        assert counts["decisions"] == 20 and counts["events"] == 5
        assert log.get_meta("checkpoint_seq") == str(log.last_seq())  # the final checkpoint


runner = CliRunner()


def test_cli_on_a_url_needs_a_checkpoint_dir_and_hides_the_password(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANDIT_API_TOKEN", TOKEN)
    monkeypatch.setenv("BANDIT_HMAC_KEY", HMAC_KEY)
    url = _with_password(pg_url)
    result = runner.invoke(cli, ["serve-policy", "--db", url])
    assert result.exit_code == 3 and "checkpoint_dir" in result.output
    assert "pg-s3cret-pw" not in result.output
    bad = "postgresql://postgres:pg-s3cret-pw@127.0.0.1:9/test"
    result = runner.invoke(cli, ["forget-user", "alice", "--db", bad])
    assert result.exit_code == 7 and "reachable" in result.output, result.output
    assert "pg-s3cret-pw" not in result.output
    result = runner.invoke(cli, ["purge", "--db", url, "--older-than", "1"])
    assert result.exit_code == 3 and "checkpoint_dir" in result.output
    result = runner.invoke(
        cli, ["purge", "--db", url, "--older-than", "1", "--checkpoint-dir", str(tmp_path)]
    )
    assert result.exit_code == 4 and "is not an existing event log" in result.output


def test_purge_and_forget_user_on_a_url(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANDIT_HMAC_KEY", HMAC_KEY)
    day = 86400.0
    with open_log(pg_url, hmac_key=HMAC_KEY.encode()) as log:
        for i, (user, age) in enumerate([("alice", 10), ("bob", 3), ("alice", 0)]):
            t = T0 + 20 * day - age * day
            d = Decision(f"d{i}", "a+b", "a", "b", 1.0, ("a+b",), (0.0,), "p", t)
            log.log_decision(d, user_id=user, x=np.ones(2), z=np.ones(2), model_id="m")
    result = runner.invoke(cli, ["forget-user", "alice", "--db", pg_url])
    assert result.exit_code == 0 and "decisions=2" in result.output, result.output
    result = runner.invoke(
        cli, ["purge", "--db", pg_url, "--older-than", "1", "--checkpoint-dir", str(tmp_path)]
    )
    assert result.exit_code == 0 and "decisions=1" in result.output, result.output
    with open_log(pg_url, hmac_key=None, read_only=True) as log:
        assert log.counts()["decisions"] == 0


def test_acknowledged_writes_survive_kill_9_of_a_postgres_backed_server(
    tmp_path: Path, pg_url: str, model: Path
) -> None:
    extra = ["--checkpoint-dir", str(tmp_path / "cps")]
    server = ServerProcess(
        model=model,
        db=pg_url,
        log_path=tmp_path / "a.log",
        extra=extra,  # type: ignore[arg-type]
    ).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=server.url, headers=auth, timeout=10.0) as http:
            for i in range(30):
                r = http.post("/v1/decisions", json={"user_id": f"user{i % 5}"})
                assert r.status_code == 200, r.text
                acknowledged.append(r.json()["decision_id"])
                r = http.post("/v1/events", json={"decision_id": acknowledged[-1], "type": "click"})
                assert r.status_code == 202, r.text
    finally:
        server.kill()  # SIGKILL: no shutdown hook, no final checkpoint
    with open_log(pg_url, hmac_key=None, read_only=True) as log:
        assert all(log.has_decision(d) for d in acknowledged)
        assert log.counts()["events"] == 30
    # a restart rolls the journal forward from nothing and goes on serving
    again = ServerProcess(
        model=model,
        db=pg_url,
        log_path=tmp_path / "b.log",
        extra=extra,  # type: ignore[arg-type]
    ).start()
    try:
        with httpx.Client(base_url=again.url, headers=auth, timeout=10.0) as http:
            r = http.get(f"/v1/decisions/{acknowledged[-1]}")
            assert r.status_code == 200 and len(r.json()["events"]) == 1
            assert http.post("/v1/decisions", json={"user_id": "user9"}).status_code == 200
    finally:
        assert again.stop() == 0
    assert "rolled forward 30 decisions, 30 events" in (tmp_path / "b.log").read_text()
