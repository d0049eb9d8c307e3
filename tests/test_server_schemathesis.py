"""Property-based fuzzing of the server against its own OpenAPI spec (schemathesis).

Any input the spec allows or nearly allows (schemathesis also sends negative data: wrong types,
missing fields, bad bodies) must be answered without a 5xx. Examples are bounded and derandomized,
so the run is reproducible and takes well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from reliability.engine_factory import save_small_engine

from bandit_engine.server import Secret, ServerSettings, open_server

TOKEN = "schemathesis-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 40


def _build(tmp: Path) -> tuple[object, object]:
    model = save_small_engine(tmp / "model.bandit")
    s = ServerSettings(
        db=str(tmp / "events.sqlite"),
        api_token=Secret(TOKEN.encode()),
        model=str(model),
        max_body_bytes=16_384,
    )
    return open_server(s, hmac_key=b"schemathesis-hmac-key-0123456789")


_TMP = Path(__import__("tempfile").mkdtemp(prefix="bandit-schemathesis-"))
APP, LOG = _build(_TMP)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, headers=AUTH)


@pytest.fixture(scope="module", autouse=True)
def _worker() -> Iterator[None]:
    yield  # no lifespan here: requests run and commit without the background timer
    LOG.close()  # type: ignore[attr-defined]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_for_any_generated_input(case: schemathesis.Case) -> None:
    response = case.call(headers=AUTH)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    # every error body names what was wrong, in the documented shape
    if response.status_code >= 400:
        body = response.json()
        assert "error" in body and "message" in body, body


def test_unauthenticated_calls_are_401() -> None:
    op = schema["/v1/decisions"]["POST"]
    case = op.Case(body={"user_id": "u1"})
    assert case.call().status_code == 401
    assert case.call(headers=AUTH).status_code == 200
