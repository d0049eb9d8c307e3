"""Business rules served from the event log: counters in the log's tables (SQLite and
PostgreSQL), exact under two processes, forgotten with the user, not double-counted on restart,
and the server's fallback answers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bandit_engine.demo import demo_engine
from bandit_engine.errors import NoOfferError
from bandit_engine.rules import Budget, Fallback, FrequencyCap, Rules
from bandit_engine.server import Secret, ServerSettings, open_server
from bandit_engine.service import Checkpointer, LoggedEngine
from bandit_engine.store import open_log

KEY = b"rules-store-test-hmac-key-0123456789"
DAY0 = 1_799_971_200.0  # a UTC midnight
USERS = ["U000001", "U000002", "U000003", "U000004"]
ROOT = Path(__file__).resolve().parent.parent


def _rules() -> Rules:
    return Rules(
        caps=(FrequencyCap("deal3", "deal", 3, 7),),
        budgets=(Budget("deal_daily", "deal", 8),),
        fallback=Fallback("no_offer"),
    )


def _service(db: str) -> LoggedEngine:
    engine = demo_engine(seed=0, policy="linucb", start_time=DAY0, clock=lambda: DAY0)
    service = LoggedEngine(engine, open_log(db, hmac_key=KEY))
    service.use_rules(_rules())
    return service


def _shows(db: str) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Logged decisions per (user, deal) and per deal, read back from the log."""
    log = open_log(db, hmac_key=KEY)
    try:
        frame = log.decisions_frame()
        per_user: dict[tuple[str, str], int] = {}
        for user in USERS:
            ids = set(log.decision_ids_of(user))
            for deal, n in frame[frame.decision_id.isin(ids)].deal_id.value_counts().items():
                per_user[(user, str(deal))] = int(n)
        per_deal = {str(k): int(v) for k, v in frame.deal_id.value_counts().items()}
    finally:
        log.close()
    return per_user, per_deal


def test_caps_and_budgets_count_in_the_log_and_hold_for_a_second_engine(db_target: str) -> None:
    a, b = _service(db_target), _service(db_target)  # two engines, two connections, one log
    served = refused = 0
    for i in range(120):
        service = (a, b)[i % 2]
        try:
            service.decide(USERS[i % 4], decision_id=f"d{i}", now=DAY0 + i)
            served += 1
        except NoOfferError:
            refused += 1
    per_user, per_deal = _shows(db_target)
    assert max(per_user.values()) == 3  # the cap is reached, never passed
    assert max(per_deal.values()) <= 8
    assert served == sum(per_deal.values()) and refused > 0
    a.log.close()
    b.log.close()


def test_forgetting_a_user_removes_their_cap_rows(db_target: str) -> None:
    service = _service(db_target)
    for i in range(5):
        service.decide(USERS[0], decision_id=f"f{i}", now=DAY0 + i)
    pseudonym = service.log.pseudonym(USERS[0])
    assert service.log.rule_history(pseudonym, 0.0, orders=False)[0]
    with service.log.transaction():
        deleted = service.forget_user(USERS[0])
    assert deleted["rule_shows"] == 5
    assert service.log.rule_history(pseudonym, 0.0, orders=False) == ([], [])
    # the user starts again from no shows
    service.decide(USERS[0], decision_id="f-again", now=DAY0 + 10)
    service.log.close()


def test_a_restart_does_not_count_the_journal_twice(tmp_path: Path) -> None:
    db = str(tmp_path / "events.sqlite")
    checkpoints = Checkpointer(tmp_path / "cps")

    def base() -> object:
        engine = demo_engine(seed=0, policy="linucb", start_time=DAY0, clock=lambda: DAY0)
        engine.use_rules(_rules())
        return engine

    log = open_log(db, hmac_key=KEY)
    service, _ = LoggedEngine.restore(base, log, checkpoints)  # type: ignore[arg-type]
    service.checkpoint()
    for i in range(6):
        service.decide(USERS[1], decision_id=f"r{i}", now=DAY0 + i)
    used = log.rule_budget_used(int(DAY0 // 86_400))
    log.close()
    log = open_log(db, hmac_key=KEY)
    _, report = LoggedEngine.restore(base, log, checkpoints)  # type: ignore[arg-type]
    assert report.redone_decisions == 6
    assert log.rule_budget_used(int(DAY0 // 86_400)) == used  # not counted a second time
    assert sum(used.values()) == 6
    log.close()


WORKER = textwrap.dedent(
    """
    import json, sys
    from bandit_engine.demo import demo_engine
    from bandit_engine.errors import NoOfferError
    from bandit_engine.rules import Budget, Fallback, FrequencyCap, Rules
    from bandit_engine.service import LoggedEngine
    from bandit_engine.store import open_log

    db, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    day0 = 1_799_971_200.0
    engine = demo_engine(seed=0, policy="linucb", start_time=day0, clock=lambda: day0)
    service = LoggedEngine(engine, open_log(db, hmac_key=b"rules-store-test-hmac-key-0123456789"))
    service.use_rules(Rules(caps=(FrequencyCap("deal3", "deal", 3, 7),),
                            budgets=(Budget("deal_daily", "deal", 8),),
                            fallback=Fallback("no_offer")))
    users = ["U000001", "U000002", "U000003", "U000004"]
    served = refused = 0
    for i in range(n):
        try:
            service.decide(users[i % 4], decision_id=f"{name}-{i}", now=day0 + i)
            served += 1
        except NoOfferError:
            refused += 1
    print(json.dumps({"served": served, "refused": refused}))
    """
)


def test_caps_are_exact_under_two_processes_hammering_one_log(
    db_target: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    _service(db_target).log.close()  # create the log (schema) before the race
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), db_target, name, "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    per_user, per_deal = _shows(db_target)
    served = sum(r["served"] for r in results)
    assert served == sum(per_deal.values())
    assert max(per_user.values()) == 3  # reached by the two processes together, never passed
    assert max(per_deal.values()) <= 8
    assert sum(r["refused"] for r in results) > 0  # the limits did bind


# -- the server ---------------------------------------------------------------------------------
TOKEN = "rules-test-token-0123456789-abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_server_serves_the_no_offer_fallback_as_a_200_with_a_reason(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[fallback]\nkind = "no_offer"\n')
    settings = ServerSettings(
        db=str(tmp_path / "events.sqlite"),
        api_token=Secret(TOKEN.encode()),
        demo_policy="linucb",
        rules=str(rules),
    )
    app, log = open_server(settings, hmac_key=KEY, clock=lambda: DAY0)
    with TestClient(app) as c:
        r = c.post(
            "/v1/decisions",
            json={"user_id": "nobody", "profile": {"groupbuy": {"city": "xian"}}},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["offer"] is False and "xian" in body["reason"]
        ok = c.post("/v1/decisions", json={"user_id": "U000001"}, headers=AUTH)
        assert ok.status_code == 200 and ok.json()["bundle_id"]
    log.close()


def test_server_refuses_rules_naming_unknown_columns(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[eligibility]]\nname = "m"\nrequire = "knowledge.tier == \'gold\'"\n')
    settings = ServerSettings(
        db=str(tmp_path / "events.sqlite"),
        api_token=Secret(TOKEN.encode()),
        demo_policy="linucb",
        rules=str(rules),
    )
    with pytest.raises(Exception, match=r"knowledge\.tier") as err:
        open_server(settings, hmac_key=KEY, clock=lambda: DAY0)
    assert type(err.value).__name__ == "ConfigError"


def test_a_version_1_log_is_migrated_and_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bandit_engine.store import schema

    db = str(tmp_path / "old.sqlite")
    with monkeypatch.context() as m:  # a log as the previous release wrote it
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        m.setattr(schema, "SCHEMA_VERSION", 1)
        old = open_log(db, hmac_key=KEY)
        old.upsert_profile("U000001", "groupbuy", {"city": "beijing"})
        assert old.get_meta("schema_version") == "1"
        old.close()
    service = _service(db)
    assert service.log.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
    assert service.log.get_profile("U000001") == {"groupbuy": {"city": "beijing"}}
    for i in range(4):
        with contextlib.suppress(NoOfferError):  # the cap may leave nothing: a no-offer
            service.decide("U000001", decision_id=f"m{i}", now=DAY0 + i)
    assert len(service.log.rule_history(service.log.pseudonym("U000001"), 0.0, orders=False)[0])
    service.log.close()
