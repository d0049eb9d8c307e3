"""``engine.explain(decision_id)`` and ``GET /v1/decisions/{id}?explain=1`` (issue 14, item 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandit_engine.demo import demo_engine
from bandit_engine.engine import Engine
from bandit_engine.errors import ConfigError, NotFoundError

EXPLAINABLE = ["linucb", "lin_ts", "hybrid_linucb", "pair_ucb", "pair_ts"]
UCB = {"linucb", "hybrid_linucb", "pair_ucb"}


def _trained(policy: str, n: int = 100) -> Engine:
    """The demo engine after ``n`` decisions, a third of them clicked, every window closed."""
    engine = demo_engine(seed=0, policy=policy)
    t = engine.now()
    for i in range(n):
        d = engine.decide(f"U{i % 40 + 1:06d}", now=t + i)
        if i % 3 == 0:
            engine.report(d.decision_id, "click", at=t + i + 1)
    engine.advance(t + 10**6)
    return engine


@pytest.mark.parametrize("policy", EXPLAINABLE)
def test_an_explanation_adds_up_and_matches_the_decision(policy: str) -> None:
    engine = _trained(policy)
    d = engine.decide("U000001", now=engine.now() + 10**6)
    ex = engine.explain(d.decision_id, top_k=4)
    assert ex.bundle_id == d.bundle_id and ex.policy == policy
    assert ex.policy_version == d.policy_version  # nothing learned since the decision
    # the effects are exact shares of the estimate: the top ones plus the rest add up to it
    assert sum(e.effect for e in ex.top) + ex.rest == pytest.approx(ex.estimate, abs=1e-9)
    assert len(ex.top) <= 4
    assert [abs(e.effect) for e in ex.top] == sorted((abs(e.effect) for e in ex.top), reverse=True)
    for e in ex.top:
        assert e.effect == pytest.approx(e.coefficient * e.value, rel=1e-12, abs=1e-15)
    # readable names: the engine's feature names (context, bundle, pair columns), no indices
    assert all("[" not in e.name or e.name.startswith(("deal[", "course[")) for e in ex.top)
    assert ex.spread > 0.0
    i = d.candidates.index(d.bundle_id)
    if policy in UCB:
        # estimate + bonus is exactly the score the decision was made with (pair policies:
        # from the user's behaviour as the decision saw it, before it added its impression)
        assert ex.spread_kind == "exploration bonus"
        assert ex.score == pytest.approx(d.scores[i], rel=1e-9)
        assert ex.runner_up is not None
        others = [s for j, s in enumerate(d.scores) if j != i]
        assert ex.runner_up["score"] == pytest.approx(max(others), rel=1e-9)
    else:
        assert ex.spread_kind == "posterior sd" and ex.score is None
    doc = ex.to_dict()
    assert doc["bundle_id"] == d.bundle_id and doc["estimated_reward"] == ex.estimate
    assert ("exploration_bonus" if policy in UCB else "posterior_sd") in doc


def test_linucb_estimate_is_theta_dot_x() -> None:
    """An independent check of the decomposition: the chosen arm's ridge estimate from its own
    A and b (solved afresh) equals the explanation's estimate."""
    engine = _trained("linucb")
    d = engine.decide("U000002", now=engine.now() + 10**6)
    ex = engine.explain(d.decision_id, top_k=1000)
    policy: Any = engine.policy
    row = policy.arms_.lookup([d.bundle_id], missing=-1)[0]
    theta = policy.ridge_.theta[row]
    x = d.x
    assert x is not None
    assert ex.estimate == pytest.approx(float(theta @ x), rel=1e-12)
    by_name = {e.name: e.coefficient for e in ex.top}
    names = engine.features.feature_names
    for j in np.flatnonzero(x * theta)[:10]:
        assert by_name[names[j]] == pytest.approx(theta[j])


def test_gone_unknown_and_unexplainable() -> None:
    engine = _trained("linucb", n=20)
    t = engine.now() + 10**6
    d = engine.decide("U000001", now=t)
    engine.explain(d.decision_id)  # pending: fine
    engine.advance(t + 10**7)  # the window closes, the policy learns, the inputs are dropped
    with pytest.raises(NotFoundError, match="its inputs are gone"):
        engine.explain(d.decision_id)
    with pytest.raises(NotFoundError):
        engine.explain("no-such-decision")
    for name in ("popularity", "uniform", "vw"):
        other = demo_engine(seed=0, policy=name)
        d = other.decide("U000001")
        with pytest.raises(ConfigError, match=f"not available for policy '{name}'"):
            other.explain(d.decision_id)
    with pytest.raises(ConfigError, match="top_k"):
        engine.explain(engine.decide("U000001", now=t + 10**7 + 1).decision_id, top_k=0)


def test_server_explains_pending_decisions(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bandit_engine.server import Secret, ServerSettings, open_server

    token = "explain-test-token-0123456789abcdef"
    auth = {"Authorization": f"Bearer {token}"}
    now = [1_800_000_000.0]
    for policy, ok in (("linucb", True), ("popularity", False)):
        settings = ServerSettings(
            db=str(tmp_path / f"{policy}.sqlite"),
            api_token=Secret(token.encode()),
            demo_policy=policy,
        )
        app, log = open_server(
            settings, hmac_key=b"explain-test-hmac-key-0123456789", clock=lambda: now[0]
        )
        try:
            with TestClient(app) as c:
                r = c.post("/v1/decisions", json={"user_id": "U000001"}, headers=auth)
                assert r.status_code == 200, r.text
                did = r.json()["decision_id"]
                plain = c.get(f"/v1/decisions/{did}", headers=auth).json()
                assert "explanation" not in plain
                r = c.get(f"/v1/decisions/{did}?explain=1&top_k=3", headers=auth)
                if not ok:
                    assert r.status_code == 422
                    assert "not available for policy 'popularity'" in r.json()["message"]
                    continue
                assert r.status_code == 200, r.text
                why = r.json()["explanation"]
                assert why["bundle_id"] == r.json()["bundle_id"]
                assert len(why["top_features"]) <= 3 and "exploration_bonus" in why
                # once the window closes the inputs are gone: a clear 404
                now[0] += 10**7
                c.post("/v1/decisions", json={"user_id": "U000002"}, headers=auth)
                r = c.get(f"/v1/decisions/{did}?explain=1", headers=auth)
                assert r.status_code == 404 and "inputs are gone" in r.json()["message"]
        finally:
            log.close()
