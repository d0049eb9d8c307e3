"""Shared by the dashboard tests: a served log seeded through the HTTP API, and the report CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from reliability.engine_factory import save_small_engine
from typer.testing import CliRunner

from bandit_engine.cli import app as cli
from bandit_engine.holdout import HoldoutGroup, HoldoutPlan
from bandit_engine.server import Secret, ServerSettings

TOKEN = "dashboard-test-token-0123456789-abcdef"
READ_TOKEN = "dashboard-read-token-9876543210-zyxwvu"
KEY = b"dashboard-test-hmac-key-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = 30.0
T0 = 1_764_547_200.0  # 2025-12-01 00:00 UTC
USERS = [f"u{i}" for i in range(1, 41)]


class Clock:
    """A settable clock shared by the engine and the test."""

    def __init__(self, t: float = T0) -> None:
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
        "holdout": HoldoutPlan((HoldoutGroup("uniform", 0.3, "uniform"),)),
        "advance_interval": 0.05,
        "dashboard_refresh": 0.0,
    }
    base.update(kw)
    return ServerSettings(**base)


def seed_traffic(c: TestClient, clock: Clock, *, n: int = 240, seed: int = 0) -> None:
    """``n`` decisions over three days for 40 users, clicks and orders (with values), most
    windows closed at the end (the last few stay pending)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        clock.t = T0 + i * (3 * 86_400.0 / n)
        user = USERS[int(rng.integers(len(USERS)))]
        r = c.post("/v1/decisions", json={"user_id": user}, headers=AUTH)
        assert r.status_code == 200, r.text
        did = r.json()["decision_id"]
        if rng.random() < 0.35:
            c.post("/v1/events", json={"decision_id": did, "type": "click"}, headers=AUTH)
            if rng.random() < 0.4:
                value = float(rng.integers(20, 120))
                c.post(
                    "/v1/events",
                    json={"decision_id": did, "type": "order", "value": value},
                    headers=AUTH,
                )
    # the windows of all but the decisions of the last WINDOW seconds close
    clock.t += WINDOW / 2
    c.post("/v1/decisions", json={"user_id": "u1"}, headers=AUTH)


def report_json(db: str) -> dict[str, Any]:
    """What ``bandit report --db DB --json`` prints."""
    res = CliRunner().invoke(cli, ["report", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def settled_report(db: str) -> dict[str, Any]:
    """``bandit report --json`` once the server's timer has closed what was due (two equal reads
    in a row)."""
    before = report_json(db)
    for _ in range(100):
        time.sleep(0.1)
        now = report_json(db)
        if now == before:
            return now
        before = now
    raise AssertionError("the log kept changing")


def dashboard_matching(
    c: TestClient, headers: dict[str, str], expected: dict[str, Any], *, timeout: float = 30.0
) -> dict[str, Any]:
    """``/dashboard/data`` once its background refresh has caught up with the log (polled; the
    caller asserts the equality, so a dashboard that never catches up fails)."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/dashboard/data", headers=headers)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        if data["report"] == expected or time.monotonic() > deadline:
            return data
        time.sleep(0.05)
