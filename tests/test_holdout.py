"""Holdout groups: the plan, sticky bucketing, routing and learning per group, persistence,
the service's roll-forward and the server (issue 13, item 1)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from reliability.engine_factory import save_small_engine, small_engine

from bandit_engine.errors import ConfigError
from bandit_engine.holdout import POLICY_GROUP, HoldoutGroup, HoldoutPlan, bucket_of
from bandit_engine.server import Secret, ServerSettings, open_server
from bandit_engine.service import Checkpointer, LoggedEngine
from bandit_engine.store import EventLog

KEY = b"holdout-test-hmac-key-0123456789"
TOKEN = "test-token-0123456789-abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_700_000_000.0
USERS = ["u1", "u2", "u3", "u4", "u5"]


def plan(*groups: tuple[str, float, str]) -> HoldoutPlan:
    return HoldoutPlan(tuple(HoldoutGroup(n, s, p) for n, s, p in groups))


@pytest.mark.parametrize("share", [0.0, -0.1, 0.51, 1.0, math.nan, "0.1", True])
def test_a_share_outside_0_to_half_is_a_clear_error(share: Any) -> None:
    with pytest.raises(ConfigError, match=r"holdout must be a share in \(0, 0.5\], got"):
        HoldoutGroup("control", share, "uniform")


def test_plan_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="holdout_policy must be a registered policy"):
        HoldoutGroup("control", 0.1, "no_such_policy")
    with pytest.raises(ConfigError, match=r"holdout name is reserved .*got .policy."):
        HoldoutGroup("policy", 0.1, "uniform")
    with pytest.raises(ConfigError, match="is given twice"):
        plan(("a", 0.1, "uniform"), ("a", 0.2, "popularity"))
    with pytest.raises(ConfigError, match="add up to less than 1"):
        plan(("a", 0.5, "uniform"), ("b", 0.5, "popularity"))
    with pytest.raises(ConfigError, match=r"holdout_policy .* once per --holdout"):
        HoldoutPlan.from_options(["0.1", "0.1"], [("uniform", {})])
    with pytest.raises(ConfigError, match="holdout must be SHARE or NAME=SHARE"):
        HoldoutPlan.from_options(["ten"], [])


def test_from_options_names_groups_after_their_policies() -> None:
    p = HoldoutPlan.from_options(
        ["0.1", "ctl=0.05", "0.05"], [("popularity", {}), ("uniform", {}), ("popularity", {})]
    )
    assert [(g.name, g.share, g.policy) for g in p.groups] == [
        ("popularity", 0.1, "popularity"),
        ("ctl", 0.05, "uniform"),
        ("holdout_3", 0.05, "popularity"),
    ]
    assert p.shares() == pytest.approx(
        {"policy": 0.8, "popularity": 0.1, "ctl": 0.05, "holdout_3": 0.05}
    )
    assert HoldoutPlan.from_options(["0.2"], []).groups[0].policy == "uniform"


def test_bucketing_is_sticky_and_matches_the_shares() -> None:
    p = plan(("a", 0.1, "uniform"), ("b", 0.3, "popularity"))
    ids = [f"{i:064x}" for i in range(20_000)]
    first = [p.assign(x) for x in ids]
    again = [HoldoutPlan.from_dict(json.loads(json.dumps(p.to_dict()))).assign(x) for x in ids]
    assert first == again  # another process, same plan: same groups
    counts = Counter(first)
    for name, share in p.shares().items():
        sd = math.sqrt(share * (1 - share) / len(ids))
        # 4 standard deviations: a wrong interval (say a off by 1%) is ~7 sd away
        assert abs(counts[name] / len(ids) - share) < 4 * sd, (name, counts)
    # appending a group moves only users of the served policy
    longer = plan(("a", 0.1, "uniform"), ("b", 0.3, "popularity"), ("c", 0.1, "uniform"))
    moved = [(x, y) for x, y in zip(first, (longer.assign(i) for i in ids), strict=True) if x != y]
    assert moved and all(x == POLICY_GROUP and y == "c" for x, y in moved)
    # a new salt reshuffles
    salted = HoldoutPlan(p.groups, salt="other")
    assert sum(a != b for a, b in zip(first, (salted.assign(x) for x in ids), strict=True)) > 1000
    assert 0.0 <= bucket_of("s", "x") < 1.0


def test_each_group_decides_with_and_learns_only_from_its_own_policy() -> None:
    engine = small_engine()
    engine.set_holdout(plan(("pop", 0.4, "popularity")))
    groups = {u: engine.group_of(u, "-") for u in USERS}
    assert set(groups.values()) == {"pop", POLICY_GROUP}, groups  # both groups occur
    before = engine.policy.n_updates_
    rng = np.random.default_rng(0)
    n_group: Counter[str] = Counter()
    for i in range(200):
        u = USERS[i % len(USERS)]
        d = engine.decide(u, now=T0 + i)
        assert d.group == groups[u]
        n_group[d.group] += 1
        if rng.random() < 0.3:
            engine.report(d.decision_id, "click", at=T0 + i)
    engine.flush(T0 + 1000)
    assert engine.policy.n_updates_ - before == n_group[POLICY_GROUP]
    assert engine.holdout_policies["pop"].n_updates_ == n_group["pop"]
    # anonymous decisions are bucketed by their decision id
    assert engine.decide(None, decision_id="anon-1", now=T0 + 2000).group in {"pop", "policy"}


def test_the_holdout_propensity_is_its_own_policy_s() -> None:
    engine = small_engine()
    engine.set_holdout(plan(("rand", 0.5, "uniform")))
    user = next(u for u in USERS if engine.group_of(u, "-") == "rand")
    d = engine.decide(user, now=T0)
    assert d.group == "rand"
    assert d.propensity == pytest.approx(1.0 / len(d.candidates))


def test_save_load_keeps_each_group_s_policy(tmp_path: Path) -> None:
    engine = small_engine()
    engine.set_holdout(plan(("pop", 0.4, "popularity")))
    for i in range(60):
        d = engine.decide(USERS[i % 5], now=T0 + i)
        if i % 3 == 0:
            engine.report(d.decision_id, "click", at=T0 + i)
    engine.advance(T0 + 45)  # some windows closed, some pending
    engine.save(tmp_path / "m.bandit")
    loaded = type(engine).load(tmp_path / "m.bandit")
    loaded.profiles = engine.profiles  # profiles are not in the file (raw ids never on disk)
    assert loaded.holdout == engine.holdout
    a = [engine.decide(USERS[i % 5], now=T0 + 100 + i) for i in range(30)]
    b = [loaded.decide(USERS[i % 5], now=T0 + 100 + i) for i in range(30)]
    assert [(x.bundle_id, x.group, x.propensity) for x in a] == [
        (x.bundle_id, x.group, x.propensity) for x in b
    ]
    assert (
        loaded.holdout_policies["pop"].get_state().keys()
        == engine.holdout_policies["pop"].get_state().keys()
    )


def test_holdouts_on_the_grid_path_use_grid_controls_and_learn_apart() -> None:
    from bandit_engine.engine import Engine
    from bandit_engine.policies import make_policy

    base = small_engine()  # a listed pair-all catalog: a grid with every pair a bundle
    grid = Engine(base.features, base.catalog, make_policy("factored_ucb", seed=0))
    # a listed control cannot decide over a grid: the group is named, nothing changes
    with pytest.raises(ConfigError, match="holdout group 'u' policy must be a grid policy"):
        grid.set_holdout(plan(("u", 0.1, "uniform")))
    assert grid.holdout is None
    grid.set_holdout(plan(("u", 0.3, "grid_uniform")))
    groups: Counter[str | None] = Counter()
    for i in range(400):
        d = grid.decide(f"user{i % 97}", now=T0 + i)
        groups[d.group] += 1
        assert d.group == grid.group_of(f"user{i % 97}", d.decision_id)
        if d.group == "u":
            # the uniform control's propensity is one over the grid's pairs
            assert d.propensity == pytest.approx(1.0 / (d.n_candidates or 0))
        grid.report(d.decision_id, "click", at=T0 + i)
    grid.flush(now=T0 + 10_000)
    # sticky buckets: about 30% of the 97 users (binomial sd ~ 4.5 users) are in the holdout
    users_u = {i % 97 for i in range(400) if grid.group_of(f"user{i % 97}", "x") == "u"}
    assert 15 <= len(users_u) <= 45
    # each group learned only from its own decisions
    assert grid.holdout_policies["u"].n_updates_ == groups["u"] > 0
    assert grid.policy.n_updates_ == groups[POLICY_GROUP] + groups[None] > 0


def test_the_log_records_groups_and_a_restart_rolls_them_forward(tmp_path: Path) -> None:
    clock_t = [T0]

    def base() -> Any:
        e = small_engine()
        e.set_holdout(plan(("pop", 0.4, "popularity")))
        return e

    log = EventLog(tmp_path / "e.sqlite", hmac_key=KEY)
    cps = Checkpointer(tmp_path / "cps")
    svc, _ = LoggedEngine.restore(base, log, cps, clock=lambda: clock_t[0])
    seen: dict[str, str] = {}
    for i in range(40):
        clock_t[0] = T0 + i
        d = svc.decide(USERS[i % 5])
        seen[d.decision_id] = str(d.group)
        if i == 20:
            svc.checkpoint()
        if i % 4 == 0:
            svc.report(d.decision_id, "click")
    stored = {did: log.decision(did)["group"] for did in seen}
    assert stored == seen
    assert json.loads(log.get_meta("holdout_plan") or "{}")["groups"][0]["name"] == "pop"
    # the group follows the keyed pseudonym, not the raw id
    assert svc.engine.group_of("u1", "-") == svc.engine.holdout.assign(log.pseudonym("u1"))  # type: ignore[union-attr]
    state = svc.engine.holdout_policies["pop"].get_state()
    log.close()
    log2 = EventLog(tmp_path / "e.sqlite", hmac_key=KEY)
    svc2, report = LoggedEngine.restore(
        base, log2, Checkpointer(tmp_path / "cps"), clock=lambda: clock_t[0]
    )
    assert report.redone_decisions == 19  # decisions 21..39 after the checkpoint
    state2 = svc2.engine.holdout_policies["pop"].get_state()
    assert state.keys() == state2.keys()
    for k in state:
        np.testing.assert_array_equal(np.asarray(state[k]), np.asarray(state2[k]))
    log2.close()


def _settings(tmp: Path, **kw: Any) -> ServerSettings:
    model = tmp / "model.bandit"
    if not model.exists():
        save_small_engine(model, window=30.0)
    return ServerSettings(
        db=str(tmp / "events.sqlite"), api_token=Secret(TOKEN.encode()), model=str(model), **kw
    )


def test_server_logs_the_group_and_exposes_the_sample_ratio_check(tmp_path: Path) -> None:
    t = [T0]
    app, log = open_server(
        _settings(tmp_path, holdout=plan(("pop", 0.4, "popularity"))),
        hmac_key=KEY,
        clock=lambda: t[0],
    )
    with TestClient(app) as c:
        groups = []
        for i in range(30):
            r = c.post("/v1/decisions", json={"user_id": f"user{i}"}, headers=AUTH)
            assert r.status_code == 200, r.text
            groups.append(r.json()["group"])
        assert set(groups) == {"pop", "policy"}
        r = c.get("/v1/experiment", headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["configured_shares"] == pytest.approx({"policy": 0.6, "pop": 0.4})
        users = {g["group"]: g["users"] for g in body["groups"]}
        assert users == dict(Counter(groups))
        assert body["srm"]["mismatch"] is False
        # the endpoint is read-scoped: no token, no answer
        assert c.get("/v1/experiment").status_code == 401
    log.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--holdout", "0.7"], "holdout must be a share in (0, 0.5], got 0.7"),
        (["--holdout", "0"], "holdout must be a share in (0, 0.5], got 0.0"),
        (["--holdout", "0.1", "--holdout-policy", "nope"], "--holdout-policy"),
        (["--holdout-policy", "popularity"], "holdout must be given"),
    ],
)
def test_serve_policy_refuses_a_bad_holdout_before_serving(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    from bandit_engine.cli import app

    r = CliRunner().invoke(
        app, ["serve-policy", "--dev", "--db", str(tmp_path / "e.sqlite"), "--port", "0", *args]
    )
    assert r.exit_code == 3, r.output
    assert message in r.output


def test_the_learner_role_teaches_each_group_its_own_decisions(tmp_path: Path) -> None:
    """Split deployment (issue 12): a decision server logs the group, the learner routes each
    reward to the group's policy, as the single-process engine does."""
    from bandit_engine.service.decider import DecisionService
    from bandit_engine.service.learner import Learner
    from bandit_engine.store import open_log
    from bandit_engine.store.lease import open_lease

    t = [T0]

    def base() -> Any:
        e = small_engine(window=30.0)
        e.set_holdout(plan(("pop", 0.4, "popularity")))
        return e

    db = str(tmp_path / "split.sqlite")
    slog = open_log(db, hmac_key=KEY)
    llog = open_log(db, hmac_key=None)
    try:
        engine = base()
        engine.clock = lambda: t[0]
        server = DecisionService(engine, slog, version=0, server_index=0)
        learner = Learner(base, llog, open_lease(llog), grace=0.0, clock=lambda: t[0])
        assert learner.try_lead()
        groups: Counter[str] = Counter()
        for i in range(40):
            d = server.decide(f"user{i}")
            groups[str(d.group)] += 1
        assert groups["pop"] and groups["policy"]
        learner.step()
        t[0] += 31.0
        learner.step()
        learned = learner.engine
        assert learned is not None and learned.n_learned == 40
        assert learned.holdout_policies["pop"].n_updates_ == groups["pop"]
        assert learned.policy.n_updates_ == groups["policy"]
    finally:
        slog.close()
        llog.close()


def test_bandit_learn_takes_the_same_holdout_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bandit_engine.cli import app

    r = CliRunner().invoke(app, ["learn", "--db", str(tmp_path / "e.sqlite"), "--holdout", "0.6"])
    assert r.exit_code == 3 and "holdout must be a share in (0, 0.5], got 0.6" in r.output
    from bandit_engine.cli.holdout_options import holdout_plan

    p = holdout_plan(["ctl=0.1"], ["popularity"], "s1")
    assert p is not None and p.salt == "s1" and p.shares()["ctl"] == 0.1
    assert holdout_plan(None, None, "s") is None
