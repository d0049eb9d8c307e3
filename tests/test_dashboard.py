"""The dashboard (issue 13 item 4) and the differentially private report (issue 15 item 2):
``/dashboard/data`` equals ``bandit report --json``, the live report's incremental refresh equals
a full read, tokens, the public view's cached release, ``bandit report --dp-epsilon``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dashboard_helpers import (
    AUTH,
    KEY,
    READ_TOKEN,
    T0,
    Clock,
    dashboard_matching,
    seed_traffic,
    settings_for,
    settled_report,
)
from fastapi.testclient import TestClient
from test_reporting import fill_log
from typer.testing import CliRunner

from bandit_engine.cli import app as cli
from bandit_engine.reporting import report_from_log
from bandit_engine.reporting.live import LiveReport
from bandit_engine.server import Secret, open_server
from bandit_engine.service import LoggedEngine
from bandit_engine.store import open_log
from bandit_engine.store.ledger import PrivacyLedger


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Clock, str]]:
    clock = Clock()
    settings = settings_for(tmp_path, role_tokens={"read": Secret(READ_TOKEN.encode())})
    app, log = open_server(settings, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        seed_traffic(c, clock)
        yield c, clock, settings.db
    log.close()


def test_dashboard_data_equals_bandit_report_json(served: tuple[TestClient, Clock, str]) -> None:
    c, _, db = served
    expected = settled_report(db)
    assert expected["totals"]["decisions"] == 241 and not expected["empty"]
    assert {g["group"] for g in expected["groups"]} == {"policy", "uniform"}
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    data = dashboard_matching(c, read, expected)
    assert data["report"] == expected
    # propensity health and versions add up to the decisions logged
    health = data["health"]
    assert health["decisions"] == 241
    assert sum(v["decisions"] for v in health["models"]) == 241
    assert health["current"]["policy_version"]
    assert 0.0 <= health["small_propensity_share"] <= 1.0
    assert 0.0 < health["effective_sample_size"] <= 241
    assert data["learner"]["n_learned"] > 0


def test_dashboard_pages_are_open_but_its_data_needs_the_read_role(
    served: tuple[TestClient, Clock, str],
) -> None:
    c, _, _ = served
    page = c.get("/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http://www.w3.org", "")  # nothing from elsewhere
    for name in ("dashboard.js", "charts.js", "dashboard.css"):
        r = c.get(f"/dashboard/static/{name}")
        assert r.status_code == 200 and len(r.content) > 500, name
    assert c.get("/dashboard/static/nope.js").status_code == 404
    assert c.get("/dashboard/static/..%2Fdashboard.py").status_code == 404
    assert c.get("/dashboard/data").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-but-long-enough"}
    assert c.get("/dashboard/data", headers=wrong).status_code == 401
    # the read role has its own token here: the shared one (decide, admin) is not enough
    assert c.get("/dashboard/data", headers=AUTH).status_code == 403
    assert c.get("/dashboard/data", headers={"Authorization": f"Bearer {READ_TOKEN}"}).is_success
    # the API description says which needs a token
    paths = c.get("/openapi.json", headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()[
        "paths"
    ]
    assert paths["/dashboard/data"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/dashboard/public/data"]["get"]


def test_live_report_refreshes_incrementally_and_equals_a_full_read(db_target: str) -> None:
    from reliability.engine_factory import small_engine

    from bandit_engine.holdout import HoldoutGroup, HoldoutPlan

    db = db_target  # a SQLite file, then a PostgreSQL schema
    engine = small_engine()
    engine.set_holdout(HoldoutPlan((HoldoutGroup("pop", 0.4, "popularity"),)))
    rng = np.random.default_rng(3)
    live = LiveReport()
    users = [f"u{i}" for i in range(1, 8)]
    with open_log(db, hmac_key=KEY) as log:
        svc = LoggedEngine(engine, log)
        reader = open_log(db, hmac_key=None, read_only=True)
        t = T0
        open_ids: list[str] = []
        for step in range(4):
            for _ in range(60):
                t += 900.0
                d = svc.decide(users[int(rng.integers(len(users)))], now=t)
                open_ids.append(d.decision_id)
            # events for decisions of this step and of earlier ones (late ones included)
            for did in rng.choice(open_ids, size=25, replace=False):
                svc.report(str(did), "click", at=t + 1)
                if rng.random() < 0.5:
                    svc.report(str(did), "order", value=40.0, at=t + 2)
            svc.flush(t - 3_000)  # closes some windows: rewards change under the cache
            snap = live.refresh(reader)
            full, _ = report_from_log(reader)
            assert snap.report.to_dict() == full.to_dict(), f"step {step}"
            assert snap.rebuilt is False
            assert snap.decision_seq == log.live_marks()[0]
        # forgetting a user deletes rows: the cache notices and starts again
        svc.forget_user("u3")
        snap = live.refresh(reader)
        assert snap.rebuilt is True
        full, _ = report_from_log(reader)
        assert snap.report.to_dict() == full.to_dict()
        reader.close()


def test_public_view_releases_once_per_period_and_stops_at_the_budget(tmp_path: Path) -> None:
    clock = Clock()
    settings = settings_for(
        tmp_path, public_dp_epsilon=1.0, dp_budget=2.5, public_dp_refresh=3600.0
    )
    app, log = open_server(settings, hmac_key=KEY, clock=clock)
    with TestClient(app) as c:
        seed_traffic(c, clock, n=120)
        page = c.get("/dashboard/public")
        assert page.status_code == 200
        first = c.get("/dashboard/public/data").json()  # no token needed
        assert first["enabled"] and first["release"]["epsilon"] == 1.0
        kinds = [r["kind"] for r in first["release"]["releases"]]
        assert kinds.count("uplift") == 2  # click and order rates, policy vs uniform
        second = c.get("/dashboard/public/data").json()
        assert second["released_at"] == first["released_at"]  # cached: no new spend
        entries = PrivacyLedger(log, total_epsilon=2.5).entries()
        assert [e.label for e in entries] == ["dashboard public view"]
        # a new period: a second release; a third would pass the budget: the last one stays
        app.state.dashboard._public["released_at"] -= 7200
        third = c.get("/dashboard/public/data").json()
        assert third["released_at"] > first["released_at"] and third["message"] == ""
        app.state.dashboard._public["released_at"] -= 7200
        fourth = c.get("/dashboard/public/data").json()
        assert fourth["released_at"] == third["released_at"] - 7200
        assert "budget" in fourth["message"]
        assert len(PrivacyLedger(log, total_epsilon=2.5).entries()) == 2
    log.close()


def test_public_view_is_off_unless_configured_and_an_empty_log_says_so(tmp_path: Path) -> None:
    app, log = open_server(settings_for(tmp_path), hmac_key=KEY, clock=Clock())
    with TestClient(app) as c:
        body = c.get("/dashboard/public/data").json()
        data = c.get("/dashboard/data", headers=AUTH).json()
    log.close()
    assert body["enabled"] is False and "--public-dp-epsilon" in body["message"]
    assert data["report"]["empty"] and "no decisions" in data["report"]["message"]
    assert data["health"]["decisions"] == 0 and data["health"]["effective_sample_size"] is None


# -- bandit report --dp-epsilon ----------------------------------------------------------------


def _dp(db: str, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["report", "--db", db, *args])
    return res.exit_code, res.output


def test_dp_report_spends_the_ledger_and_refuses_past_the_budget(tmp_path: Path) -> None:
    db = str(tmp_path / "dp.sqlite")
    fill_log(db, n=300)
    code, out = _dp(db, "--dp-epsilon", "1")
    assert code != 0 and "dp_budget must be given" in out
    code, out = _dp(db, "--dp-epsilon", "1", "--dp-budget", "2", "--dp-cap", "100")
    assert code == 0, out
    rel = json.loads(out)
    assert rel["dp"] and rel["epsilon"] == 1.0 and rel["ledger"]["spent_epsilon"] == 1.0
    kinds = {r["kind"] for r in rel["releases"]}
    assert kinds == {"count", "rate", "uplift"}
    each = rel["releases"][0]["epsilon"]
    assert each * len(rel["releases"]) == pytest.approx(1.0)  # basic composition, stated
    assert all("discrete Laplace" in r["mechanism"] for r in rel["releases"])
    # the recorded budget is reused; 1.5 more would pass it: refused, nothing recorded
    code, out = _dp(db, "--dp-epsilon", "1.5")
    assert code == 3 and "would exceed the privacy budget" in out
    code, out = _dp(db, "--dp-epsilon", "1")
    assert code == 0, out
    with open_log(db, hmac_key=None) as log:
        entries = PrivacyLedger(log, total_epsilon=2.0).entries()
    assert [e.epsilon for e in entries] == [1.0, 1.0]
    assert [json.loads(e.details)["cap"] for e in entries] == [100, 20]  # each as released


def test_dp_report_refuses_exact_outputs_beside_it(tmp_path: Path) -> None:
    db = str(tmp_path / "dp.sqlite")
    fill_log(db, n=20)
    code, out = _dp(db, "--dp-epsilon", "1", "--dp-budget", "5", "--csv", str(tmp_path))
    assert code == 3 and "leave out --csv" in out
    with open_log(db, hmac_key=None) as log:
        assert PrivacyLedger(log, total_epsilon=5.0).entries() == []  # nothing spent


@pytest.mark.parametrize("eps", ["0", "-1", "nan", "inf"])
def test_dp_report_epsilon_must_be_positive(tmp_path: Path, eps: str) -> None:
    db = str(tmp_path / "dp.sqlite")
    fill_log(db, n=20)
    code, out = _dp(db, "--dp-epsilon", eps, "--dp-budget", "5")
    assert code == 3 and "dp_epsilon must be a finite number > 0" in out, out


def test_dp_report_counts_are_close_on_a_large_cap(tmp_path: Path) -> None:
    """The released decision counts are within their stated error bound of the exact counts (no
    user is clipped at this cap). Each bound holds with probability 0.95; the test fails only if
    both of two releases miss, probability <= 0.05^2 = 0.0025 at any seed."""
    db = str(tmp_path / "dp.sqlite")
    fill_log(db, n=300)
    with open_log(db, hmac_key=None, read_only=True) as log:
        exact, _ = report_from_log(log)
    decisions = {g["group"]: g["decisions"] for g in exact.groups}
    code, out = _dp(db, "--dp-epsilon", "50", "--dp-budget", "50", "--dp-cap", "300")
    assert code == 0, out
    counts = [r for r in json.loads(out)["releases"] if r["kind"] == "count"]
    assert len(counts) == 2
    misses = [abs(r["value"] - decisions[r["group"]]) > r["error_bound"] for r in counts]
    assert not all(misses)
