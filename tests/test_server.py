"""In-process tests of the policy server (FastAPI TestClient, injected clock)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from reliability.engine_factory import save_small_engine

from bandit_engine.errors import ConfigError
from bandit_engine.server import Secret, ServerSettings, load_api_token, open_server
from bandit_engine.store import EventLog

TOKEN = "test-token-0123456789-abcdefghij"
KEY = b"server-test-hmac-key-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = 30.0


class Clock:
    """A settable clock shared by the engine and the test."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def settings_for(tmp: Path, **kw: Any) -> ServerSettings:
    model = tmp / "model.bandit"
    if not model.exists():
        save_small_engine(model, window=WINDOW)
    base: dict[str, Any] = {
        "db": str(tmp / "events.sqlite"),
        "api_token": Secret(TOKEN.encode()),
        "model": str(model),
    }
    base.update(kw)
    return ServerSettings(**base)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    app, log = open_server(settings_for(tmp_path), hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        yield c
    log.close()


def decide(c: TestClient, user: str = "u1", **body: Any) -> dict[str, Any]:
    r = c.post("/v1/decisions", json={"user_id": user, **body}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def event(c: TestClient, did: str, type: str = "click", **body: Any) -> dict[str, Any]:
    r = c.post("/v1/events", json={"decision_id": did, "type": type, **body}, headers=AUTH)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def raw_post(c: TestClient, path: str, body: bytes, **headers: str) -> Any:
    return c.post(
        path, content=body, headers={**AUTH, "content-type": "application/json", **headers}
    )


# -- the decision / event / status cycle ------------------------------------------------------


def test_decision_event_status_cycle_and_log(
    client: TestClient, clock: Clock, tmp_path: Path
) -> None:
    d = decide(client)
    assert set(d) == {
        "decision_id",
        "bundle_id",
        "deal_id",
        "course_id",
        "propensity",
        "policy_version",
        "timestamp",
    }
    assert d["bundle_id"] == f"{d['deal_id']}+{d['course_id']}"
    assert 0.0 < d["propensity"] <= 1.0 and d["timestamp"] == clock.t
    # committed before the answer: another connection sees it at once
    with EventLog(tmp_path / "events.sqlite", hmac_key=KEY) as other:
        assert other.has_decision(d["decision_id"])
    clock.t += 5
    assert event(client, d["decision_id"], "click", event_id="e1")["status"] == "accepted"
    assert event(client, d["decision_id"], "click", event_id="e1")["status"] == "duplicate"
    clock.t += 1
    assert (
        event(client, d["decision_id"], "order", value=35.5, event_id="e2")["status"] == "accepted"
    )
    g = client.get(f"/v1/decisions/{d['decision_id']}", headers=AUTH).json()
    assert g["status"] == g["reward_status"] == "pending"
    assert [e["event_id"] for e in g["events"]] == ["e1", "e2"]  # the duplicate is stored once
    # the window closes: the next request advances the engine, the reward (1 + 2) is learned
    clock.t += WINDOW
    d2 = decide(client, "u2")
    g = client.get(f"/v1/decisions/{d['decision_id']}", headers=AUTH).json()
    assert (g["status"], g["reward"], g["n_events"]) == ("learned", 3.0, 2)
    assert d2["policy_version"] != d["policy_version"]  # the policy learned one update
    # nothing came for d2: default reward; an event after its window is late and flagged
    clock.t += WINDOW + 1
    assert event(client, d2["decision_id"], "click", event_id="late")["status"] == "late"
    g2 = client.get(f"/v1/decisions/{d2['decision_id']}", headers=AUTH).json()
    assert (g2["status"], g2["reward_status"], g2["reward"], g2["n_late"]) == (
        "default",
        "late",
        0.0,
        1,
    )
    metrics = client.get("/metrics", headers=AUTH).text
    assert "bandit_decisions_total 2" in metrics
    assert 'bandit_rewards_learned_total{status="learned"} 1' in metrics
    assert 'bandit_rewards_learned_total{status="default"} 1' in metrics
    assert "bandit_late_events_total 1" in metrics
    assert 'bandit_events_total{status="duplicate"} 1' in metrics


def test_logged_rows_carry_context_and_pseudonym(client: TestClient, tmp_path: Path) -> None:
    d = decide(client, "u3", profile={"groupbuy": {"avg_ticket": 99.0}})
    with EventLog(tmp_path / "events.sqlite", hmac_key=KEY) as log:
        frame = log.decisions_frame()
        assert list(frame["decision_id"]) == [d["decision_id"]]
        row = log._conn.execute("SELECT user FROM decisions").fetchone()
        assert row[0] == log.pseudonym("u3")
    x = np.asarray(frame.filter(like="x_").iloc[0], dtype=float)
    assert x.shape == (12,) and np.isfinite(x).all()


def test_client_decision_id_and_conflict(client: TestClient) -> None:
    d = decide(client, decision_id="my-id-1")
    assert d["decision_id"] == "my-id-1"
    r = client.post("/v1/decisions", json={"user_id": "u1", "decision_id": "my-id-1"}, headers=AUTH)
    assert r.status_code == 409 and r.json()["field"] == "decision_id"


def test_candidates_mask_and_stored_profile_merge(client: TestClient) -> None:
    # profiles are not saved with a model file: u1 is unknown, so every city is eligible
    both = {decide(client, "u1", candidates=["d1+c2", "d3+c1"])["bundle_id"] for _ in range(30)}
    assert both == {"d1+c2", "d3+c1"}  # untried arms tie, broken at random: P(miss) = 2^-29
    shanghai = {"groupbuy": {"city": "shanghai"}}
    d = decide(client, "u1", candidates=["d1+c2", "d3+c1"], profile=shanghai)
    assert d["bundle_id"] == "d1+c2"  # d3 is in beijing: not eligible in shanghai
    r = client.post(
        "/v1/admin/profiles",
        json={"user_id": "zoe", "profile": {"groupbuy": {"city": "beijing", "avg_ticket": 20}}},
        headers=AUTH,
    )
    assert r.status_code == 200
    assert decide(client, "zoe", candidates=["d1+c2", "d3+c1"])["bundle_id"] == "d3+c1"
    # the inline profile is merged over the stored one and wins
    d = decide(
        client, "zoe", candidates=["d1+c2", "d3+c1"], profile={"groupbuy": {"city": "shanghai"}}
    )
    assert d["bundle_id"] == "d1+c2"


def test_admin_catalog_changes(client: TestClient) -> None:
    deal = {"deal_id": "d9", "city": "shanghai", "cuisine": "bbq", "price": 50.0, "discount": 0.1}
    r = client.post("/v1/admin/deals", json={"deals": [deal]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["added_bundles"] == ["d9+c1", "d9+c2", "d9+c3"]
    assert decide(client, "u1", candidates=["d9+c3"])["bundle_id"] == "d9+c3"
    r = client.post("/v1/admin/bundles/retire", json={"ids": ["d9+c3"]}, headers=AUTH)
    assert r.status_code == 200
    r = client.post("/v1/decisions", json={"user_id": "u1", "candidates": ["d9+c3"]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "candidates"
    r = client.post("/v1/admin/deals/retire", json={"ids": ["nope"]}, headers=AUTH)
    assert r.status_code == 404 and r.json()["field"] == "deal_id"
    course = {"course_id": "c9", "topic": "art", "format": "live", "price": 10.0, "rating": 4.0}
    r = client.post("/v1/admin/courses", json={"courses": [course]}, headers=AUTH)
    assert "d1+c9" in r.json()["added_bundles"]
    r = client.post(
        "/v1/admin/bundles", json={"bundles": [{"deal_id": "d1", "course_id": "zz"}]}, headers=AUTH
    )
    assert r.status_code == 404
    bad = dict(deal, deal_id="d10", price="cheap")
    r = client.post("/v1/admin/deals", json={"deals": [bad]}, headers=AUTH)
    assert r.status_code == 422 and "price" in r.json()["field"]


def test_forget_reaches_the_profile_the_next_decision_uses(client: TestClient) -> None:
    profile = {"groupbuy": {"city": "beijing", "avg_ticket": 20}}
    r = client.post("/v1/admin/profiles", json={"user_id": "zoe", "profile": profile}, headers=AUTH)
    assert r.status_code == 200
    assert decide(client, "zoe", candidates=["d1+c2", "d3+c1"])["bundle_id"] == "d3+c1"
    r = client.post("/v1/admin/users/forget", json={"user_id": "zoe"}, headers=AUTH)
    assert r.status_code == 200
    # zoe is a stranger again: no known city, so both cities' deals are eligible
    seen = {decide(client, "zoe", candidates=["d1+c2", "d3+c1"])["bundle_id"] for _ in range(30)}
    assert seen == {"d1+c2", "d3+c1"}  # untried arms tie, broken at random: P(miss) = 2^-29


def test_forget_reaches_profiles_the_engine_was_built_with(tmp_path: Path, clock: Clock) -> None:
    from bandit_engine.demo import demo_engine

    def base() -> Any:  # like --dev: the demo engine holds its users' profiles in memory
        return demo_engine(seed=0, start_time=clock.t - 86_400)

    app, log = open_server(settings_for(tmp_path), hmac_key=KEY, clock=clock, base=base)
    with TestClient(app) as c:
        engine = app.state.worker.engine
        known = engine.context("U000001").copy()
        assert np.count_nonzero(known) > 3  # a profile is there
        r = c.post("/v1/admin/users/forget", json={"user_id": "U000001"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["deleted"]["profiles"] >= 1  # a row per platform
        assert np.count_nonzero(app.state.worker.engine.context("U000001")) == 1  # cold start
    log.close()


def test_forget_user(client: TestClient, tmp_path: Path) -> None:
    d = decide(client, "gone-user", profile={"groupbuy": {"city": "beijing"}})
    client.post(
        "/v1/admin/profiles",
        json={"user_id": "gone-user", "profile": {"knowledge": {"spend": 1}}},
        headers=AUTH,
    )
    keep = decide(client, "u2")
    r = client.post("/v1/admin/users/forget", json={"user_id": "gone-user"}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["deleted"] == {
        "profiles": 1,
        "decisions": 1,
        "events": 0,
        "learned": 0,
        "behaviour": 0,
        "consent_log": 0,
        "rule_shows": 0,
        "decision_modes": 0,
    }
    assert client.get(f"/v1/decisions/{d['decision_id']}", headers=AUTH).status_code == 404
    assert client.get(f"/v1/decisions/{keep['decision_id']}", headers=AUTH).status_code == 200
    r = client.post(
        "/v1/events", json={"decision_id": d["decision_id"], "type": "click"}, headers=AUTH
    )
    assert r.status_code == 404


# -- security and bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/decisions"),
        ("POST", "/v1/events"),
        ("GET", "/v1/decisions/abc"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/v1/admin/deals"),
        ("POST", "/v1/admin/deals/retire"),
        ("POST", "/v1/admin/courses"),
        ("POST", "/v1/admin/courses/retire"),
        ("POST", "/v1/admin/bundles"),
        ("POST", "/v1/admin/bundles/retire"),
        ("POST", "/v1/admin/profiles"),
        ("POST", "/v1/admin/users/forget"),
        ("GET", "/no/such/route"),
    ],
)
def test_every_endpoint_but_healthz_needs_the_token(
    client: TestClient, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ):
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 401, (headers, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["field"] == "Authorization"
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"user_id": "u1"', 400, "body"),
        (b"not json", 400, "body"),
        (b"[1, 2]", 422, None),
        (b'{"user_id": "u1", "colour": "red"}', 422, "colour"),
        (b"{}", 422, "user_id"),
        (b'{"user_id": 12}', 422, "user_id"),
        (b'{"user_id": ""}', 422, "user_id"),
        (
            b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": NaN}}}',
            422,
            "profile.groupbuy.avg_ticket",
        ),
        (
            b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": Infinity}}}',
            422,
            "profile.groupbuy.avg_ticket",
        ),
        (
            b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": -1e999}}}',
            422,
            "profile.groupbuy.avg_ticket",
        ),
        (
            b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": 1e400}}}',
            422,
            "profile.groupbuy.avg_ticket",
        ),
        (
            b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": 99999999999999999999999}}}',
            422,
            "profile.groupbuy.avg_ticket",
        ),
        (
            b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": "cheap"}}}',
            422,
            "groupbuy.avg_ticket",
        ),
        (b'{"user_id": "u1", "profile": {"mars": {"x": 1}}}', 422, None),
        (b'{"user_id": "\\ud800"}', 422, "user_id"),
        (b'{"user_id": "u1", "candidates": []}', 422, "candidates"),
        (b'{"user_id": "u1", "candidates": ["no-such-bundle"]}', 404, "candidates"),
        (b'{"user_id": "u1", "candidates": "d1+c1"}', 422, "candidates"),
    ],
)
def test_bad_decision_bodies_are_4xx_naming_the_field(
    client: TestClient, body: bytes, status: int, field: str | None
) -> None:
    r = raw_post(client, "/v1/decisions", body)
    assert r.status_code == status, r.text
    out = r.json()
    assert set(out) >= {"error", "message"}
    if field is not None:
        assert out["field"] == field, out


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"decision_id": "nope", "type": "click"}', 404, "decision_id"),
        (b'{"decision_id": "x", "type": "view"}', 422, "type"),
        (b'{"decision_id": "x", "type": "order", "value": NaN}', 422, "value"),
        (b'{"decision_id": "x", "type": "order", "value": Infinity}', 422, "value"),
        (b'{"decision_id": "x", "type": "order", "value": -3}', 422, "value"),
        (b'{"decision_id": "x", "type": "order", "value": "12"}', 422, "value"),
        (b'{"decision_id": "x", "type": "order", "value": true}', 422, "value"),
        (b'{"decision_id": "x", "type": "click", "when": 1}', 422, "when"),
    ],
)
def test_bad_event_bodies(client: TestClient, body: bytes, status: int, field: str) -> None:
    r = raw_post(client, "/v1/events", body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field


def test_body_size_limit_413(tmp_path: Path, clock: Clock) -> None:
    app, log = open_server(settings_for(tmp_path, max_body_bytes=2048), hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        big = json.dumps({"user_id": "u1", "profile": {"groupbuy": {"city": "x" * 4000}}}).encode()
        r = raw_post(c, "/v1/decisions", big)
        assert r.status_code == 413 and r.json()["field"] == "body"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield big[:1000]
            yield big[1000:]

        r = c.post(
            "/v1/decisions", content=chunks(), headers={**AUTH, "content-type": "application/json"}
        )
        assert r.status_code == 413
        assert decide(c)["bundle_id"]  # small bodies still pass
    log.close()


def test_secrets_never_reach_logs(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, log = open_server(settings_for(tmp_path), hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        c.get("/metrics", headers={"Authorization": "Bearer wrong-but-long-enough-token"})
        decide(c)
        raw_post(c, "/v1/decisions", b"{broken")
        c.post("/v1/events", json={"decision_id": "nope", "type": "click"}, headers=AUTH)
        c.get("/v1/decisions/none", headers=AUTH)
    log.close()
    text = caplog.text + repr(app.state.settings) + str(app.state.settings.api_token)
    assert TOKEN not in text and "wrong-but-long-enough-token" not in text
    assert KEY.decode() not in text
    assert "Secret('***')" in repr(app.state.settings.api_token)


def test_load_api_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANDIT_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="BANDIT_API_TOKEN"):
        load_api_token()
    monkeypatch.setenv("BANDIT_API_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16 characters, got 5") as info:
        load_api_token()
    assert "short" not in str(info.value)
    monkeypatch.setenv("BANDIT_API_TOKEN", TOKEN)
    assert load_api_token().reveal() == TOKEN.encode()
    f = tmp_path / "token"
    f.write_text("from-a-token-file-0123456789\n")
    assert load_api_token(file=f).reveal() == b"from-a-token-file-0123456789"


def test_openapi_spec_declares_bearer_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=AUTH).json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    paths = spec["paths"]
    for path in ("/v1/decisions", "/v1/events", "/v1/decisions/{decision_id}", "/metrics"):
        for op in paths[path].values():
            assert op["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/healthz"]["get"]
    assert paths["/v1/events"]["post"]["responses"].get("202") is not None


def test_metrics_text_format(client: TestClient) -> None:
    decide(client)
    text = client.get("/metrics", headers=AUTH).text
    assert client.get("/metrics", headers=AUTH).headers["content-type"].startswith("text/plain")
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert {
        "bandit_decisions_total",
        "bandit_events_total",
        "bandit_rewards_learned_total",
        "bandit_late_events_total",
        "bandit_request_duration_seconds",
        "bandit_pending_decisions",
    } <= families
    buckets = [
        ln
        for ln in text.splitlines()
        if ln.startswith('bandit_request_duration_seconds_bucket{le="+Inf",route="/v1/decisions"}')
    ]
    assert buckets and float(buckets[0].split()[-1]) == 1.0
    for line in text.splitlines():  # every sample line is "<name>[{labels}] <number>"
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))


def test_storage_busy_is_503_not_500(tmp_path: Path, clock: Clock) -> None:
    settings = settings_for(tmp_path, busy_timeout=0.05)
    app, log = open_server(settings, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        blocker = sqlite3.connect(settings.db, timeout=0.01)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            log._retry = lambda fn: fn()  # type: ignore[method-assign]  # no retries: fail fast
            assert c.get("/readyz").status_code == 200
            r = c.post("/v1/decisions", json={"user_id": "u1"}, headers=AUTH)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            # liveness stays up (restarting would not help); readiness says writes fail
            assert c.get("/healthz").status_code == 200
            assert c.get("/readyz").status_code == 503
        finally:
            blocker.rollback()
            blocker.close()
        assert decide(c)["decision_id"]  # rebuilt and serving again
        assert c.get("/readyz").status_code == 200  # a write worked: ready again
    log.close()


def test_checkpoint_after_seconds_without_more_traffic(tmp_path: Path, clock: Clock) -> None:
    s = settings_for(tmp_path, checkpoint_seconds=0.2, advance_interval=0.05)
    app, log = open_server(s, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        decide(c)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and log.get_meta("checkpoint_seq") is None:
            time.sleep(0.05)  # the timer, not a request, triggers it
        files = list(s.checkpoints.glob("checkpoint-*.bandit"))
        assert log.get_meta("checkpoint_seq") == "1"
        assert [f.name for f in files] == ["checkpoint-000000000001.bandit"]
    log.close()


POST_PATHS = [
    "/v1/decisions",
    "/v1/events",
    "/v1/admin/deals",
    "/v1/admin/deals/retire",
    "/v1/admin/courses",
    "/v1/admin/courses/retire",
    "/v1/admin/bundles",
    "/v1/admin/bundles/retire",
    "/v1/admin/profiles",
    "/v1/admin/users/forget",
]


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_deeply_nested_json_is_a_400_on_every_endpoint(
    client: TestClient, path: str, chunked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    depth = 970  # a 2 KB body: once a 500 with a traceback per request
    body = b'{"user_id": "u1", "decision_id": "d", "profile": ' + b"[" * depth + b"]" * depth + b"}"
    content: Any = iter([body]) if chunked else body
    r = client.post(path, content=content, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "body" and "nesting" in r.json()["message"]
    assert "Traceback" not in caplog.text


def test_brackets_inside_strings_are_not_nesting(client: TestClient) -> None:
    d = decide(client, "u1", profile={"groupbuy": {"city": "[" * 100 + "{" * 100}})
    assert d["bundle_id"]


def test_healthz_and_readyz_answer_head_and_need_no_token(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        assert client.head(path).status_code == 200
        assert client.get(path).json() == {"status": "ok"}


@pytest.mark.parametrize("bad", ["a/b", "a b", "é", "a?b", "a#b", "x%2F"])
def test_decision_ids_are_path_safe(client: TestClient, bad: str) -> None:
    r = client.post("/v1/decisions", json={"user_id": "u1", "decision_id": bad}, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == "decision_id"
    good = "Order-2026.12:04~x_1"
    d = decide(client, "u1", decision_id=good)
    assert client.get(f"/v1/decisions/{d['decision_id']}", headers=AUTH).status_code == 200


DECIDE = "decide-role-token-Qx7pL2vR9sT4wY8z"
READ = "read-role-token-Hk3mN6bV1cX5zA0q"
ADMIN = "admin-role-token-Jf8gD2sW7eR4tY1u"


@pytest.fixture
def roles_client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    tokens = {"decide": DECIDE, "read": READ, "admin": ADMIN}
    role_tokens: Any = {r: Secret(t.encode()) for r, t in tokens.items()}
    app, log = open_server(
        settings_for(tmp_path, role_tokens=role_tokens), hmac_key=KEY, clock=clock
    )
    with TestClient(app) as c:
        yield c
    log.close()


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_role_calls_only_its_endpoints(roles_client: TestClient) -> None:
    c = roles_client
    r = c.post("/v1/decisions", json={"user_id": "u1"}, headers=_as(DECIDE))
    assert r.status_code == 200
    did = r.json()["decision_id"]
    assert (
        c.post(
            "/v1/events", json={"decision_id": did, "type": "click"}, headers=_as(DECIDE)
        ).status_code
        == 202
    )
    # the decision token can neither read back nor administer (profiles, forget, catalog)
    assert c.get(f"/v1/decisions/{did}", headers=_as(DECIDE)).status_code == 403
    profile = {"user_id": "u1", "profile": {"groupbuy": {"city": "beijing"}}}
    r = c.post("/v1/admin/profiles", json=profile, headers=_as(DECIDE))
    assert r.status_code == 403 and r.json()["field"] == "Authorization"
    assert "admin" in r.json()["message"]
    assert (
        c.post("/v1/admin/users/forget", json={"user_id": "u1"}, headers=_as(DECIDE)).status_code
        == 403
    )
    assert (
        c.post("/v1/admin/deals/retire", json={"ids": ["d1"]}, headers=_as(READ)).status_code == 403
    )
    # the read token reads, the admin token administers
    assert c.get(f"/v1/decisions/{did}", headers=_as(READ)).status_code == 200
    assert c.get("/metrics", headers=_as(READ)).status_code == 200
    assert c.post("/v1/decisions", json={"user_id": "u1"}, headers=_as(READ)).status_code == 403
    assert c.post("/v1/admin/profiles", json=profile, headers=_as(ADMIN)).status_code == 200
    # the shared fallback token of the fixture is not one of the three: refused
    assert c.post("/v1/decisions", json={"user_id": "u1"}, headers=AUTH).status_code == 401


def test_two_authorization_headers_are_refused(client: TestClient) -> None:
    headers = [
        ("Authorization", "Bearer wrong-token-0123456789abcdef"),
        ("Authorization", f"Bearer {TOKEN}"),
    ]
    for first_wins in (False, True):
        r = client.post(
            "/v1/decisions",
            json={"user_id": "u1"},
            headers=headers[::-1] if first_wins else headers,
        )
        assert r.status_code == 400 and r.json()["field"] == "Authorization"


@pytest.mark.parametrize("weak", ["a" * 16, "1" * 40, "ab" * 12, "0123012301230123"])
def test_weak_secrets_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, weak: str
) -> None:
    from bandit_engine.server.auth import load_role_tokens
    from bandit_engine.store import load_hmac_key

    monkeypatch.setenv("BANDIT_API_TOKEN", weak)
    with pytest.raises(ConfigError, match="BANDIT_API_TOKEN must be a random secret") as info:
        load_api_token()
    assert weak not in str(info.value)  # never echo the secret
    monkeypatch.setenv("BANDIT_HMAC_KEY", weak)
    with pytest.raises(ConfigError, match="BANDIT_HMAC_KEY must be a random secret"):
        load_hmac_key()
    monkeypatch.setenv("BANDIT_ADMIN_TOKEN", weak)
    with pytest.raises(ConfigError, match="BANDIT_ADMIN_TOKEN"):
        load_role_tokens(Secret(TOKEN.encode()))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (unwritable)")
def test_an_unwritable_checkpoint_dir_is_refused_at_start(tmp_path: Path, clock: Clock) -> None:
    s = settings_for(tmp_path, checkpoint_dir="/proc/bandit-test-checkpoints")
    with pytest.raises(ConfigError, match="checkpoint_dir must be a writable folder"):
        open_server(s, hmac_key=KEY, clock=clock)


def test_a_start_that_rolled_forward_saves_a_checkpoint(tmp_path: Path, clock: Clock) -> None:
    s = settings_for(tmp_path)
    app, log = open_server(s, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        for i in range(5):
            decide(c, f"u{i}")
        c.portal.call(app.state.worker.kill)  # a crash: no final checkpoint
    assert log.get_meta("checkpoint_seq") is None
    log.close()
    app, log = open_server(s, hmac_key=KEY, clock=clock)
    # the journal rolled forward at this start is in a checkpoint already: the next start after
    # another crash does not roll it forward again
    assert log.get_meta("checkpoint_seq") == str(log.last_seq())
    log.close()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"citty": "beijing"}, "groupbuy.citty"),
        ({"avg_ticket": "cheap"}, "groupbuy.avg_ticket"),
    ],
)
def test_profile_upserts_are_checked_against_the_schema(
    client: TestClient, fields: dict[str, Any], field: str
) -> None:
    good = {"user_id": "zoe", "profile": {"groupbuy": {"city": "beijing", "avg_ticket": 20}}}
    assert client.post("/v1/admin/profiles", json=good, headers=AUTH).status_code == 200
    bad = {"user_id": "zoe", "profile": {"groupbuy": fields}}
    r = client.post("/v1/admin/profiles", json=bad, headers=AUTH)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    # nothing was stored: zoe's decisions still work and still see beijing only
    assert decide(client, "zoe", candidates=["d1+c2", "d3+c1"])["bundle_id"] == "d3+c1"
    unknown = {"user_id": "zoe", "profile": {"tiktok": {"followers": 3}}}
    r = client.post("/v1/admin/profiles", json=unknown, headers=AUTH)
    assert r.status_code == 422, r.text


def _files_hold(root: Path, needles: list[bytes]) -> list[str]:
    """Which files under ``root`` (and members of zip files) contain any of ``needles``."""
    import zipfile

    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blobs = [path.read_bytes()]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                blobs += [z.read(name) for name in z.namelist()]
        if any(n in b for b in blobs for n in needles):
            found.append(str(path.relative_to(root)))
    return found


def test_forget_leaves_no_copy_in_any_file(tmp_path: Path, clock: Clock) -> None:
    from bandit_engine.demo import demo_engine
    from bandit_engine.engine import Engine

    s = settings_for(tmp_path)
    # the demo engine: its schema has a live-behaviour block, whose row must go too
    app, log = open_server(
        s, hmac_key=KEY, clock=clock, base=lambda: demo_engine(seed=0, start_time=clock.t - 86_400)
    )
    user = "forget-me-user-7731"
    profile = {"groupbuy": {"city": "shanghai", "avg_ticket": 12345.678}}
    with TestClient(app) as c:
        r = c.post("/v1/admin/profiles", json={"user_id": user, "profile": profile}, headers=AUTH)
        assert r.status_code == 200
        ids = [decide(c, user)["decision_id"] for _ in range(3)]
        for i in range(20):
            decide(c, f"other{i}")
        c.portal.call(app.state.worker.checkpoint)  # a checkpoint with the user's pending decisions
        saved = Engine.load(s.checkpoints / sorted(p.name for p in s.checkpoints.iterdir())[-1])
        assert all(saved.attribution.status(d) == "pending" for d in ids)
        needles = [user.encode(), log.pseudonym(user).encode(), b"12345.678"]
        assert _files_hold(tmp_path, needles)  # the test can see them before
        # the user's live-behaviour row is keyed by the first 12 bytes of the pseudonym (raw)
        behaviour_key = bytes.fromhex(log.pseudonym(user))[:12]
        assert app.state.worker.engine.behaviour_key(user) == behaviour_key
        assert _files_hold(s.checkpoints, [behaviour_key])  # in the checkpoint before
        needles.append(behaviour_key)
        r = c.post("/v1/admin/users/forget", json={"user_id": user}, headers=AUTH)
        assert r.status_code == 200
        engine = app.state.worker.engine
        assert engine.profiles.get(user) is None
        assert not any(d in engine.attribution for d in ids)  # not pending, never learned
        # db, -wal, -shm, checkpoints (and their members), the model file: no trace
        assert _files_hold(tmp_path, needles) == []
        for path in s.checkpoints.iterdir():
            assert not any(d in Engine.load(path).attribution for d in ids)
        decide(c, "other0")  # still serving
    log.close()


def test_demo_policy_is_a_registered_name_and_is_served(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(ConfigError, match="demo_policy must be a registered policy") as info:
        ServerSettings(
            db=str(tmp_path / "x.sqlite"), api_token=Secret(TOKEN.encode()), demo_policy="nope"
        )
    assert info.value.field == "demo_policy" and info.value.value == "nope"
    for name in ("pair_ucb", "linucb"):
        s = ServerSettings(
            db=str(tmp_path / f"{name}.sqlite"), api_token=Secret(TOKEN.encode()), demo_policy=name
        )
        app, log = open_server(s, hmac_key=KEY, clock=clock)
        with TestClient(app):
            assert app.state.worker.engine.policy.name == name
        log.close()
