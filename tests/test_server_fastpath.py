"""The raw-ASGI hot path answers exactly like the FastAPI routes it short-cuts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from reliability.engine_factory import save_small_engine

from bandit_engine.server import Secret, ServerSettings, open_server

TOKEN = "fastpath-token-0123456789abc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

BODIES: list[tuple[str, bytes, str | None]] = [
    ("/v1/decisions", b'{"user_id": "u1", "decision_id": "same-id"}', "application/json"),
    ("/v1/decisions", b'{"user_id": "u1", "decision_id": "same-id"}', "application/json"),  # 409
    ("/v1/decisions", b'{"user_id": "u2"}', "application/json; charset=utf-8"),
    ("/v1/decisions", b'{"user_id": "u2"}', "application/vnd.api+json"),
    ("/v1/decisions", b'{"user_id": "u2"}', None),
    ("/v1/decisions", b'{"user_id": "u2"}', "text/plain"),
    ("/v1/decisions", b"", "application/json"),
    ("/v1/decisions", b'{"user_id": "u1"', "application/json"),
    ("/v1/decisions", b"\xff\xfe{}", "application/json"),
    ("/v1/decisions", b"[]", "application/json"),
    ("/v1/decisions", b"null", "application/json"),
    ("/v1/decisions", b'{"user_id": "u1", "x": 1}', "application/json"),
    ("/v1/decisions", b'{"user_id": NaN}', "application/json"),
    (
        "/v1/decisions",
        b'{"user_id": "u1", "profile": {"groupbuy": {"avg_ticket": Infinity}}}',
        "application/json",
    ),
    ("/v1/decisions", b'{"user_id": "u1", "candidates": ["nope"]}', "application/json"),
    ("/v1/decisions", b'{"user_id": "u1", "candidates": []}', "application/json"),
    ("/v1/decisions", b'{"user_id": "\\ud800"}', "application/json"),
    (
        "/v1/events",
        b'{"decision_id": "same-id", "type": "click", "event_id": "e"}',
        "application/json",
    ),
    (
        "/v1/events",
        b'{"decision_id": "same-id", "type": "click", "event_id": "e"}',
        "application/json",
    ),
    ("/v1/events", b'{"decision_id": "missing", "type": "click"}', "application/json"),
    ("/v1/events", b'{"decision_id": "same-id", "type": "view"}', "application/json"),
    ("/v1/events", b'{"decision_id": "same-id", "type": "order", "value": -1}', "application/json"),
    (
        "/v1/events",
        b'{"decision_id": "same-id", "type": "order", "value": "1"}',
        "application/json",
    ),
    ("/v1/events", b"{}", "application/json"),
]


@contextmanager
def _client(tmp: Path, fast: bool) -> Iterator[TestClient]:
    model = tmp / "model.bandit"
    if not model.exists():
        save_small_engine(model)
    settings = ServerSettings(
        db=str(tmp / f"events-{fast}.sqlite"),
        api_token=Secret(TOKEN.encode()),
        model=str(model),
        fast_path=fast,
        checkpoint_dir=str(tmp / f"cp-{fast}"),
    )
    app, log = open_server(settings, hmac_key=b"fastpath-hmac-key-0123456789")
    with TestClient(app) as c:
        yield c
    log.close()


def _answers(c: TestClient) -> list[tuple[int, Any]]:
    out = []
    for path, body, ctype in BODIES:
        headers = dict(AUTH)
        if ctype is not None:
            headers["content-type"] = ctype
        r = c.post(path, content=body, headers=headers)
        data = r.json()
        if r.status_code == 200:  # the chosen bundle differs between engines' random draws
            data = sorted(data)
        out.append((r.status_code, data, r.headers.get("retry-after")))
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, list[tuple[int, Any]]]:
    tmp = tmp_path_factory.mktemp("fastpath")
    out = {}
    for fast in (True, False):
        with _client(tmp, fast) as c:
            out[fast] = _answers(c)
    return out


def test_fast_path_equals_fastapi_routes(answers: dict[bool, list[tuple[int, Any]]]) -> None:
    for i, (fast, slow) in enumerate(zip(answers[True], answers[False], strict=True)):
        assert fast == slow, (BODIES[i], fast, slow)


def test_the_corpus_covers_success_and_every_error_class(
    answers: dict[bool, list[tuple[int, Any]]],
) -> None:
    assert {status for status, _, _ in answers[True]} >= {200, 202, 400, 404, 409, 422}


def test_fast_path_size_limit_and_metrics(tmp_path: Path) -> None:
    big = b'{"user_id": "' + b"x" * 70_000 + b'"}'
    json_auth = {**AUTH, "content-type": "application/json"}
    with _client(tmp_path, True) as c:
        r = c.post("/v1/decisions", content=big, headers=json_auth)
        assert r.status_code == 413 and r.json()["field"] == "body"
        # no Content-Length: the hot path counts while it reads
        r = c.post("/v1/decisions", content=iter([big[:40_000], big[40_000:]]), headers=json_auth)
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert c.post("/v1/decisions", json={"user_id": "u"}, headers=AUTH).status_code == 200
        text = c.get("/metrics", headers=AUTH).text
    assert 'bandit_http_requests_total{code="413",route="/v1/decisions"} 1' in text
    assert 'bandit_http_requests_total{code="200",route="/v1/decisions"} 1' in text
