"""Apprentice mode: the rule is served until the switch (every choice is the rule's), the learner
learns from the rule's traffic, agreement and the off-policy estimate are reported, the switch
is decided by the documented rule or told, journaled, and replayed after a restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bandit_engine.demo import demo_engine, demo_world
from bandit_engine.errors import ConfigError
from bandit_engine.evaluation.apprentice import SwitchThresholds, check_switch, status, switch
from bandit_engine.policies import make_policy
from bandit_engine.policies.apprentice import ApprenticePolicy
from bandit_engine.server import Secret, ServerSettings, open_server
from bandit_engine.service import Checkpointer, LoggedEngine
from bandit_engine.simulation.apprentice_run import run_apprentice
from bandit_engine.store import open_log

DAY0 = 1_799_971_200.0
KEY = b"apprentice-test-hmac-key-0123456789"


def test_before_the_switch_every_served_choice_is_the_rules_and_after_it_the_learners() -> None:
    world = demo_world(seed=0, start_time=DAY0)
    run = run_apprentice(world, rounds=3000, seed=0, force_at=2000, check_every=250)
    assert run.switch_at == 2000 and run.forced
    s = run.switch_at
    # the goal itself: before the switch the apprentice served exactly what the rule alone served
    assert (run.served[:s] == run.rule[:s]).all()
    np.testing.assert_array_equal(run.apprentice_value[:s], run.rule_value[:s])
    # after it the learner decides: it no longer follows the rule everywhere
    assert (run.served[s:] != run.rule[s:]).mean() > 0.5
    st = run.final_status
    assert st.mode == "policy" and st.rule_decisions == 2000
    assert st.evaluated > 1900  # nearly every rule decision closed and entered the estimate
    assert 0.0 <= st.agreement <= 1.0 and np.isfinite(st.learner_value)


def test_the_learner_learns_from_the_rules_traffic_with_the_rules_propensities() -> None:
    engine = demo_engine(seed=0, policy="linucb", start_time=DAY0, clock=lambda: DAY0)
    rule = {"name": "fixed_rule", "params": {"column": 10, "epsilon": 0.2, "seed": 1}}
    engine.policy = ApprenticePolicy(rule=rule, learner=engine.policy, seed=0)
    alone = make_policy("fixed_rule", column=10, epsilon=0.2, seed=1)
    served_props = []
    for i in range(200):
        x, ids, Z = engine.policy_inputs("U000001", now=DAY0 + i)
        expected = alone.probabilities(x, ids, Z)
        d = engine.decide("U000001", now=DAY0 + i)
        assert d.mode == "apprentice:rule"
        assert expected is not None
        assert d.propensity == pytest.approx(expected[d.candidates.index(d.bundle_id)])
        served_props.append(d.propensity)
        alone.choose(x, ids, Z)  # keep the reference rule's generator in step
        engine.report(d.decision_id, "click", at=DAY0 + i)
    engine.flush(DAY0 + 10_000)
    policy = engine.policy
    assert isinstance(policy, ApprenticePolicy)
    assert policy.learner_.n_updates_ == 200  # learned every rule decision
    assert len(policy.eval_rows_) == 200
    # the learner was updated with the rule's propensities (one estimate row per decision)
    learned_props = sorted(row[1] for row in policy.eval_rows_)
    np.testing.assert_allclose(learned_props, sorted(served_props))


def test_the_switch_rule_waits_for_enough_decisions_and_a_better_lower_bound() -> None:
    engine = demo_engine(seed=0, policy="linucb", start_time=DAY0, clock=lambda: DAY0)
    engine.policy = ApprenticePolicy(rule="uniform", learner=engine.policy, seed=0)
    for i in range(50):
        d = engine.decide("U000002", now=DAY0 + i)
        engine.report(d.decision_id, "click", at=DAY0 + i)
    engine.flush(DAY0 + 10_000)
    st = check_switch(engine, SwitchThresholds(min_decisions=100))
    assert not st.ready and "50 of 100" in st.reason
    assert engine.policy.mode == "rule"  # type: ignore[attr-defined]
    # every reward 1: the learner cannot be better than the rule's 1.0, so no switch either
    st = check_switch(engine, SwitchThresholds(min_decisions=10))
    assert st.rule_value == 1.0 and not st.ready and "not above" in st.reason
    assert switch(engine) and not switch(engine)  # told; the second time is a no-op
    assert status(engine).mode == "policy"
    assert engine.decide("U000002", now=DAY0 + 20_000).mode == "apprentice:policy"


def test_thresholds_are_validated() -> None:
    with pytest.raises(ConfigError, match="min_decisions"):
        SwitchThresholds(min_decisions=0)
    with pytest.raises(ConfigError, match="min_agreement"):
        SwitchThresholds(min_agreement=1.5)
    engine = demo_engine(seed=0, policy="linucb", start_time=DAY0)
    with pytest.raises(ConfigError, match="apprentice"):
        status(engine)


def test_logged_modes_the_journaled_switch_and_its_replay(tmp_path: Path) -> None:
    db = str(tmp_path / "events.sqlite")
    cps = Checkpointer(tmp_path / "cps")

    def base() -> object:
        engine = demo_engine(seed=0, policy="linucb", start_time=DAY0, clock=lambda: DAY0)
        engine.policy = ApprenticePolicy(rule="uniform", learner=engine.policy, seed=0)
        return engine

    log = open_log(db, hmac_key=KEY)
    service, _ = LoggedEngine.restore(base, log, cps)  # type: ignore[arg-type]
    service.checkpoint()
    for i in range(10):
        service.decide("U000003", decision_id=f"a{i}", now=DAY0 + i)
    service.apprentice_switch()
    for i in range(10, 15):
        service.decide("U000003", decision_id=f"a{i}", now=DAY0 + i)
    modes = [m["mode"] for m in log.decision_modes()]
    assert modes == ["apprentice:rule"] * 10 + ["apprentice:policy"] * 5
    targets = [m["target_p"] for m in log.decision_modes()]
    assert all(t is not None for t in targets[:10]) and all(t is None for t in targets[10:])
    log.close()
    # a restart from the checkpoint before the switch replays it at its place
    log = open_log(db, hmac_key=KEY)
    again, report = LoggedEngine.restore(base, log, cps)  # type: ignore[arg-type]
    assert report.redone_decisions == 15 and report.redone_admin == 1
    assert again.engine.policy.mode == "policy"  # type: ignore[attr-defined]
    log.close()


TOKEN = "apprentice-token-0123456789-abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_server_apprentice_flag_status_and_switch_endpoints(tmp_path: Path) -> None:
    settings = ServerSettings(
        db=str(tmp_path / "events.sqlite"),
        api_token=Secret(TOKEN.encode()),
        demo_policy="linucb",
        apprentice="fixed_rule:column=10,epsilon=0.1",
    )
    app, log = open_server(settings, hmac_key=KEY, clock=lambda: DAY0)
    with TestClient(app) as c:
        d = c.post("/v1/decisions", json={"user_id": "U000001"}, headers=AUTH).json()
        assert d["mode"] == "apprentice:rule"
        st = c.get("/v1/admin/apprentice", headers=AUTH).json()
        assert st["mode"] == "rule" and st["rule"] == "fixed_rule" and st["learner"] == "linucb"
        assert st["rule_decisions"] == 1 and st["ready"] is False
        sw = c.post("/v1/admin/apprentice/switch", headers=AUTH)
        assert sw.status_code == 200 and sw.json()["op"] == "apprentice_switch"
        d = c.post("/v1/decisions", json={"user_id": "U000001"}, headers=AUTH).json()
        assert d["mode"] == "apprentice:policy"
    log.close()
