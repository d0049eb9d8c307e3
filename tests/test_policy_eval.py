"""Evaluating engine policies on logs: action distributions, uplift intervals, online replay,
the engine-log loader and the OBD adapter (bandit_engine.evaluation: dispatch, policy_log,
policy_run, online_replay, uplift)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import T0

from bandit_engine import Catalog, Engine, ProfileSchema, RewardSpec
from bandit_engine.errors import ConfigError, DataError, NotFoundError, ValidationError
from bandit_engine.evaluation import ips, replay
from bandit_engine.evaluation.datasets import EngineLogData, load_engine_log, load_log, load_obd
from bandit_engine.evaluation.dispatch import evaluate_action_dist, evaluate_policy
from bandit_engine.evaluation.online_replay import online_replay
from bandit_engine.evaluation.policy_log import (
    PolicyLog,
    obd_policy_inputs,
    policy_log_from_logged,
    policy_log_from_obd,
)
from bandit_engine.evaluation.policy_run import action_distribution, fit_policy, freeze_policy
from bandit_engine.evaluation.reward_models import LogisticRewardModel
from bandit_engine.evaluation.uplift import Uplift
from bandit_engine.policies import FixedRule, LinearTS, LinUCB, UniformRandom, policy_to_dict
from bandit_engine.store import EventLog

EXCERPT = Path(__file__).parent / "data" / "obd_excerpt"
KEY = b"test-key-0123456789abcdef"

# -- a synthetic world with known truth --------------------------------------------------------
# K arms, contexts x = (1, N(0,1), N(0,1)), click probability sigmoid(b_a + theta_a . x).
K = 4
_B = np.array([-1.2, -0.6, -0.9, -1.5])
_TH = np.array([[0.0, 0.8, -0.3], [0.0, -0.5, 0.4], [0.0, 0.3, 0.9], [0.0, 1.2, 0.0]])
_W_LOG = np.array([[0.0, 0.2, 0.1], [0.0, -0.3, 0.2], [0.0, 0.1, -0.2], [0.0, 0.0, 0.3]])


def contexts(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.normal(size=(n, 3))
    X[:, 0] = 1.0
    return X


def click_prob(X: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(_B + X @ _TH.T)))


def softmax(X: np.ndarray, W: np.ndarray, temp: float, floor: float) -> np.ndarray:
    s = X @ W.T / temp
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (1.0 - floor) * p + floor / K


def logging_policy(X: np.ndarray) -> np.ndarray:
    return softmax(X, _W_LOG, 1.0, 0.2)


def target_policy(X: np.ndarray) -> np.ndarray:
    return softmax(X, _TH, 0.5, 0.05)


def true_values() -> tuple[float, float]:
    """(V(target), V(logging)) by Monte Carlo over 2e6 contexts: error ~3e-4, far below the
    interval widths (~0.05) the coverage test looks at."""
    X = contexts(np.random.default_rng(123), 2_000_000)
    Q = click_prob(X)
    return float((target_policy(X) * Q).sum(1).mean()), float((logging_policy(X) * Q).sum(1).mean())


def sample_log(seed: int, n: int, *, uniform: bool = False) -> PolicyLog:
    rng = np.random.default_rng(seed)
    X = contexts(rng, n)
    P0 = np.full((n, K), 1.0 / K) if uniform else logging_policy(X)
    a = np.minimum((rng.random(n)[:, None] > P0.cumsum(axis=1)).sum(axis=1), K - 1)
    r = (rng.random(n) < click_prob(X)[np.arange(n), a]).astype(np.float64)
    return PolicyLog(
        context=X,
        arm_ids=("a", "b", "c", "d"),
        arm_features=np.eye(K),
        action=a.astype(np.int64),
        reward=r,
        pscore=P0[np.arange(n), a],
    )


def state_snapshot(policy: Any) -> str:
    """A comparable text form of the full policy state (arrays and random generator)."""
    return repr(
        {
            k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in _flatten(policy_to_dict(policy)).items()
        }
    )


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix] = d
    return out


# -- uplift interval ---------------------------------------------------------------------------


def test_uplift_interval_covers_the_true_uplift_about_95_percent() -> None:
    v_target, v_logging = true_values()
    true_uplift = v_target - v_logging
    assert true_uplift > 0.05  # the two policies differ, so the test is not trivial
    seeds = range(400)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    value_hits = dict.fromkeys(hits, 0)
    paired_narrower = 0
    for seed in seeds:
        log = sample_log(seed, 1000)
        ev = evaluate_action_dist(
            reward=log.reward,
            action=log.action,
            pscore=log.pscore,
            action_dist=target_policy(log.context),
            context=log.context,
            estimators=list(hits),
            seed=seed,
        )
        for name in hits:
            u, e = ev.uplifts[name], ev.estimates[name]
            hits[name] += u.ci_low <= true_uplift <= u.ci_high
            value_hits[name] += e.ci_low <= v_target <= e.ci_high
        unpaired = np.hypot(ev.estimates["ips"].std_error, ev.logged.std_error)
        paired_narrower += ev.uplifts["ips"].std_error < unpaired
    # 400 runs: the binomial sd of an observed coverage near 0.95 is 0.011, so [0.91, 0.985]
    # is more than 3 sd wide on each side (measured on 1000 other seeds: 0.943-0.949).
    for name, h in hits.items():
        assert 0.91 <= h / len(seeds) <= 0.985, (name, h)
        assert 0.91 <= value_hits[name] / len(seeds) <= 0.985, (name, value_hits[name])
    # The candidate and the logging value share rows and are positively correlated here, so the
    # paired interval is narrower than adding the two variances, in (almost) every run.
    assert paired_narrower >= 0.95 * len(seeds)


def test_uplift_is_exactly_zero_when_evaluating_the_logging_policy() -> None:
    log = sample_log(5, 500)
    ev = evaluate_action_dist(
        reward=log.reward,
        action=log.action,
        pscore=log.pscore,
        action_dist=logging_policy(log.context),
        context=log.context,
        estimators=["ips", "snips"],
    )
    for name in ("ips", "snips"):
        assert ev.estimates[name].value == pytest.approx(ev.logged.value, abs=1e-12)
        u = ev.uplifts[name]
        assert u.value == pytest.approx(0.0, abs=1e-12)
        assert u.std_error == pytest.approx(0.0, abs=1e-9)  # every paired difference is 0
        assert not u.significant


def test_rounding_sized_uplift_is_never_significant() -> None:
    # Seen when a saved engine is evaluated on its own log: every weight is 1, the paired
    # differences are rounding noise, and a zero-width interval can sit just above 0.
    assert not Uplift("ips", 1.4e-17, 5.0e-18, 2.3e-17, 4e-18).significant
    assert Uplift("ips", 0.01, 0.004, 0.016, 0.003).significant
    assert Uplift("ips", -0.01, -0.016, -0.004, 0.003).significant
    assert not Uplift("ips", 0.01, -0.002, 0.022, 0.006).significant


def test_bootstrap_uplift_is_seeded_and_close_to_the_normal_interval() -> None:
    log = sample_log(11, 800)
    kwargs: dict[str, Any] = {
        "reward": log.reward,
        "action": log.action,
        "pscore": log.pscore,
        "action_dist": target_policy(log.context),
        "estimators": ["ips", "snips"],
    }
    normal = evaluate_action_dist(**kwargs)
    boot1 = evaluate_action_dist(**kwargs, ci="bootstrap", n_bootstrap=400, seed=3)
    boot2 = evaluate_action_dist(**kwargs, ci="bootstrap", n_bootstrap=400, seed=3)
    for name in ("ips", "snips"):
        b, n = boot1.uplifts[name], normal.uplifts[name]
        assert b.ci_method == "bootstrap" and (b.ci_low, b.ci_high) == (
            boot2.uplifts[name].ci_low,
            boot2.uplifts[name].ci_high,
        )
        width_n, width_b = n.ci_high - n.ci_low, b.ci_high - b.ci_low
        assert 0.7 < width_b / width_n < 1.3  # same data, same first-order variance
    assert boot1.logged.ci_method == "bootstrap"


# -- action distributions ----------------------------------------------------------------------


def test_exact_and_sampled_distributions_agree() -> None:
    train = sample_log(1, 20)
    test = sample_log(2, 40)
    # Trained on 20 rows the posterior is wide, so the choice is genuinely random.
    ts = fit_policy(LinearTS(v=1.0, seed=4), train)
    exact, how = action_distribution(ts, test, method="auto")
    assert how == "exact"
    sampled, how_s = action_distribution(ts, test, method="sample", n_draws=200, seed=9)
    assert how_s == "sampled(200)"
    np.testing.assert_allclose(exact.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(sampled.sum(axis=1), 1.0, atol=1e-12)
    assert 0.05 < float(exact.max(axis=1).mean()) < 0.95  # not deterministic: a real check
    # Each sampled entry is a binomial share: within 5 standard deviations (plus one count).
    sd = np.sqrt(exact * (1 - exact) / 200)
    assert np.all(np.abs(sampled - exact) <= 5 * sd + 1 / 200)
    again, _ = action_distribution(ts, test, method="sample", n_draws=200, seed=9)
    np.testing.assert_array_equal(sampled, again)  # same seed, same draws
    e_exact = ips(reward=test.reward, action=test.action, pscore=test.pscore, action_dist=exact)
    e_sampled = ips(reward=test.reward, action=test.action, pscore=test.pscore, action_dist=sampled)
    assert abs(e_exact.value - e_sampled.value) < 0.5 * e_exact.std_error


def test_sampling_only_policies_are_sampled_and_exact_is_refused() -> None:
    train = sample_log(1, 30)
    test = sample_log(2, 10)
    shared = fit_policy(
        LinearTS(v=1.0, mode="shared", propensity_samples=50, seed=1),
        replace(train, arm_features=np.eye(K) + 0.1),
    )
    log = replace(test, arm_features=np.eye(K) + 0.1)
    dist, how = action_distribution(shared, log, n_draws=20, seed=0)
    assert how == "sampled(20)"
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="cannot give exact probabilities"):
        action_distribution(shared, log, method="exact")
    with pytest.raises(ConfigError, match="n_draws must be an int >= 1, got 0"):
        action_distribution(shared, log, n_draws=0)


def test_candidates_outside_the_row_get_probability_zero() -> None:
    base = sample_log(3, 6, uniform=True)
    cands = tuple(np.array(sorted({int(a), (int(a) + 1) % K}), dtype=np.int64) for a in base.action)
    log = replace(base, pscore=np.full(6, 0.5), candidates=cands)
    dist, _ = action_distribution(UniformRandom(seed=0), log)
    for i, c in enumerate(cands):
        expected = np.zeros(K)
        expected[c] = 0.5
        np.testing.assert_allclose(dist[i], expected)
    assert log.is_uniform()


# -- never mutating the engine -----------------------------------------------------------------


def test_evaluating_never_changes_the_policy() -> None:
    log = sample_log(7, 300)
    for policy in (
        fit_policy(LinUCB(alpha=0.5, epsilon=0.1, seed=3), sample_log(8, 100)),
        fit_policy(LinearTS(v=0.7, seed=3), sample_log(8, 100)),
    ):
        before = state_snapshot(policy)
        evaluate_policy(policy, log, estimators=["ips", "dr", "online_replay"], check_uniform=False)
        action_distribution(policy, log.rows(range(20)), method="sample", n_draws=5)
        fit_policy(policy, log)
        assert state_snapshot(policy) == before
        # and the original still draws what it would have drawn
        twin = freeze_policy(policy)
        x, ids, Z = log.context[0], log.arm_ids, log.arm_features
        assert policy.choose(x, ids, Z).index == twin.choose(x, ids, Z).index


def test_fit_policy_learns_on_a_copy() -> None:
    log = sample_log(4, 200)
    fresh = LinUCB(alpha=0.1, seed=0)
    trained = fit_policy(fresh, log)
    assert fresh.n_updates_ == 0 and trained.n_updates_ == 200


# -- online replay -----------------------------------------------------------------------------


def test_online_replay_of_a_fixed_policy_equals_replay() -> None:
    log = sample_log(21, 2000, uniform=True)
    rule = FixedRule(column=0, seed=0)  # arm features: column 0 is 1 only for arm "a"
    est = online_replay(rule, log, seed=0)
    ref = replay(reward=log.reward, action=log.action, policy_action=np.zeros(2000, dtype=int))
    assert est.estimator == "online_replay"
    assert est.value == pytest.approx(ref.value, abs=1e-12)
    assert est.n == ref.n == int((log.action == 0).sum())
    assert (est.ci_low, est.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))


def test_online_replay_learns_only_from_matched_rows() -> None:
    log = sample_log(3, 4000, uniform=True)
    ev = evaluate_policy(LinUCB(alpha=0.3, seed=0), log, estimators=["online_replay"])
    est, up = ev.estimates["online_replay"], ev.uplifts["online_replay"]
    # About n / K rows match (binomial sd ~27): 1000 +- 100 is > 3 sd each side.
    assert 900 <= est.n <= 1100
    assert est.extra["n_logged"] == 4000
    # Uniform logging earns ~0.295, the best arm per context ~0.473; LinUCB learns most of the
    # gap (measured uplift 0.15 +- 0.013 se), so a lower bound of 0.08 leaves a wide margin.
    assert up.ci_low > 0.08
    assert ev.method == "online"


def test_online_replay_refuses_non_uniform_logs() -> None:
    log = sample_log(1, 300)  # softmax logging
    with pytest.raises(DataError, match=r"assumes uniformly random logging.*use ips or dr"):
        online_replay(LinUCB(seed=0), log)
    no_ps = replace(log, pscore=None)
    with pytest.raises(DataError, match="no \\(or incomplete\\) propensities"):
        online_replay(LinUCB(seed=0), no_ps)
    # In a full evaluation the refusal is reported, and the other estimators still run.
    ev = evaluate_policy(LinUCB(seed=0), log, estimators=["ips", "online_replay"])
    assert "online_replay" in ev.skipped and "ips" in ev.estimates
    assert any("online_replay skipped" in w for w in ev.warnings)


# -- data warnings and errors ------------------------------------------------------------------


def test_warnings_for_thin_data_and_refusals() -> None:
    log = sample_log(2, 200)
    sparse = np.zeros(200)
    sparse[[3, 50, 120]] = 1.0  # 3 clicks
    always_d = np.zeros((200, K))
    always_d[:, 3] = 1.0  # deterministic: only the ~1 in 4 rows that logged "d" carry weight
    ev = evaluate_action_dist(
        reward=sparse,
        action=log.action,
        pscore=log.pscore,
        action_dist=always_d,
        estimators=["ips", "dm"],
    )
    text = " | ".join(ev.warnings)
    assert "only 3 of 200 rows have a non-zero reward" in text
    assert "ips: effective sample size" in text
    with pytest.raises(DataError, match=r"no estimator could run.*ips: .*use dm"):
        evaluate_action_dist(
            reward=log.reward,
            action=log.action,
            pscore=None,
            action_dist=target_policy(log.context),
            estimators=["ips"],
        )
    with pytest.raises(ConfigError, match="estimators must be in"):
        evaluate_action_dist(
            reward=log.reward, action=log.action, action_dist=np.full((200, K), 0.25),
            estimators=["magic"],
        )  # fmt: skip
    with pytest.raises(ConfigError, match="reward_model must be 'ridge' or 'logistic'"):
        evaluate_action_dist(
            reward=log.reward, action=log.action, action_dist=np.full((200, K), 0.25),
            estimators=["dm"], reward_model="forest",
        )  # fmt: skip


def test_policy_log_validates_shapes() -> None:
    log = sample_log(0, 5)
    with pytest.raises(ValidationError, match=r"context must have shape \(n=5, d\), got \(4, 3\)"):
        replace(log, context=log.context[:4], pscore=None)
    with pytest.raises(ValidationError, match="action must be one of the row's candidates"):
        replace(
            log,
            action=np.zeros(5, dtype=np.int64),
            pscore=None,
            candidates=tuple(np.array([1, 2]) for _ in range(5)),
        )
    with pytest.raises(ConfigError, match=r"train_fraction must be in \[0, 1\), got 1.5"):
        log.split(1.5)


def test_non_numeric_arrays_are_refused_naming_the_field() -> None:
    log = sample_log(0, 5)
    words = [["a"] * K] * 5
    with pytest.raises(ValidationError, match="action_dist must be an array of numbers") as info:
        evaluate_action_dist(
            reward=log.reward, action=log.action, pscore=log.pscore, action_dist=words,
            estimators=["ips"],
        )  # fmt: skip
    assert info.value.field == "action_dist"
    ragged = [[0.5, 0.5], [1.0]]
    with pytest.raises(ValidationError, match="action_dist must be an array of numbers"):
        evaluate_action_dist(reward=[1.0, 0.0], action=[0, 1], action_dist=ragged)
    data = load_log(pd.DataFrame({"action": ["a", "b"], "reward": [1.0, 0.0]}))
    with pytest.raises(ValidationError, match="arm_features must be an array of numbers"):
        policy_log_from_logged(data, arm_features=[["x"], ["y"]])
    model = LogisticRewardModel()
    with pytest.raises(ValidationError, match="X must be an array of numbers"):
        model.fit([["a", "b"], ["c", "d"]], [0.0, 1.0])
    model.fit(np.eye(2), [0.0, 1.0])
    with pytest.raises(ValidationError, match="X must be an array of numbers"):
        model.predict_proba([["a", "b"]])


def test_logistic_reward_model_refuses_non_finite_features() -> None:
    # A NaN feature used to give NaN coefficients (and every prediction NaN) without an error.
    model = LogisticRewardModel()
    with pytest.raises(
        ValidationError, match=r"X must be finite: .*1 of 3 rows \(index 0\)"
    ) as info:
        model.fit([[np.nan], [1.0], [0.0]], [1.0, 0.0, 1.0])
    assert info.value.field == "X" and model.coef_ is None
    model.fit([[2.0], [1.0], [0.0]], [1.0, 0.0, 1.0])
    with pytest.raises(ValidationError, match="X must be finite"):
        model.predict_proba([[np.inf]])


def test_logistic_reward_model_recovers_a_known_logit() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 2))
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(-1.0 + 2.0 * X[:, 0] - X[:, 1])))).astype(float)
    m = LogisticRewardModel(alpha=1e-3).fit(X, y)
    assert m.coef_ is not None
    # Maximum likelihood on 20,000 rows: coefficient se ~0.03, so 0.1 is a > 3 sd margin.
    np.testing.assert_allclose([m.intercept_, *m.coef_], [-1.0, 2.0, -1.0], atol=0.1)
    assert m.predict_proba(X[:3]).shape == (3, 2)
    with pytest.raises(ValidationError, match="y must be 0 or 1"):
        m.fit(X[:3], [0.0, 0.5, 1.0])


# -- the engine's own log ----------------------------------------------------------------------


def make_engine(
    schema: ProfileSchema, tables: dict[str, pd.DataFrame], catalog: Catalog, policy: Any
) -> Engine:
    counter = itertools.count()
    return Engine.build(
        schema=schema,
        profiles=tables,
        catalog=catalog,
        policy=policy,
        rewards=RewardSpec(click=1.0, order=2.0, window=600.0),
        id_factory=lambda: f"d{next(counter)}",
    )


def write_engine_log(path: Path, engine: Engine, n: int, seed: int) -> list[str]:
    """Run ``engine`` for ``n`` decisions, logging them, their clicks and learned rewards the way
    the server does. Returns the decision ids."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    with EventLog(path, hmac_key=KEY) as log:
        engine.on_learned = log.log_learned
        for i in range(n):
            user = ["u1", "u2", "u3", "u4"][int(rng.integers(4))]
            now = T0 + 10.0 * i
            d = engine.decide(user, now=now)
            x = engine.context(user, now=now)
            z = engine.catalog.features([d.bundle_id])[0]
            log.log_decision(d, user_id=user, x=x, z=z, model_id=engine.model_id)
            # Bundles with course c1 are clicked more: something for a policy to learn.
            if rng.random() < (0.6 if d.course_id == "c1" else 0.2):
                status = engine.report(d.decision_id, "click", at=now + 1.0)
                log.log_event(d.decision_id, "click", 0.0, now + 1.0, None, status)
            ids.append(d.decision_id)
    return ids


def test_load_engine_log_matches_what_was_logged(
    tmp_path: Path, schema: ProfileSchema, tables: dict[str, pd.DataFrame], catalog: Catalog
) -> None:
    engine = make_engine(schema, tables, catalog, UniformRandom(seed=1))
    path = tmp_path / "events.sqlite"
    ids = write_engine_log(path, engine, 120, seed=0)
    data = load_engine_log(path)
    assert isinstance(data, EngineLogData)
    # The last window (600 s = 60 decisions) is still open: those decisions are pending.
    assert data.n_pending == len(engine.attribution) > 0
    assert data.n_rows + data.n_pending == 120
    assert data.decision_id is not None
    assert data.decision_id.tolist() == ids[: data.n_rows]
    frame = data.frame
    chosen = [data.action_ids[a] for a in data.action]
    assert chosen == frame["bundle_id"].tolist()
    assert data.candidates is not None
    for cand, logged in zip(data.candidates, frame["candidates"], strict=True):
        assert sorted(data.action_ids[j] for j in cand) == sorted(logged)
    assert data.pscore is not None
    np.testing.assert_allclose(data.pscore, 1.0 / data.candidate_counts())  # uniform logging
    np.testing.assert_array_equal(data.reward, (frame["click"] > 0).astype(float))
    assert data.context is not None and data.context.shape == (
        data.n_rows,
        engine.features.n_features,
    )
    assert data.chosen_features.shape == (data.n_rows, engine.catalog.n_arm_features)
    assert data.model_ids == (engine.model_id,)
    # A reward spec recomputes the reward from the logged events.
    spec = RewardSpec(click=3.0, default_reward=-1.0)
    np.testing.assert_array_equal(
        load_engine_log(path, reward_spec=spec).reward, np.where(data.reward > 0, 3.0, -1.0)
    )


def test_load_engine_log_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="is not an existing event log"):
        load_engine_log(tmp_path / "absent.sqlite")
    EventLog(tmp_path / "empty.sqlite", hmac_key=KEY).close()
    with pytest.raises(DataError, match="holds no decisions"):
        load_engine_log(tmp_path / "empty.sqlite")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 10)
    with pytest.raises(DataError, match="not a bandit-engine event log"):
        load_engine_log(bad)


def test_load_engine_log_validates_like_the_file_loaders(tmp_path: Path) -> None:
    from bandit_engine.records import Decision, LearnedReward

    path = tmp_path / "events.sqlite"
    with EventLog(path, hmac_key=KEY) as log:
        for i, (bundle, p) in enumerate([("b1", 0.5), ("b2", 0.0), ("b9", 0.5), ("b1", 1.5)]):
            d = Decision(f"d{i}", bundle, "x", "y", p, ("b1", "b2"), (0.0, 0.0), "v", T0 + i)
            log.log_decision(d, user_id=None, x=np.ones(2), z=np.ones(3), model_id="m")
            log.log_learned(LearnedReward(f"d{i}", bundle, 1.0, "learned", 1, T0 + 10))
    with pytest.raises(ValidationError) as info:
        load_engine_log(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: 2 problem(s)")
    assert "propensity must be in (0, 1]: 2 of 4 rows (rows 2, 4; values 0, 1.5)" in msg
    assert "bundle_id must be one of the row's candidates: 1 of 4 rows (row 3; values b9)" in msg


def test_evaluating_a_saved_engine_on_its_log_leaves_it_unchanged(
    tmp_path: Path, schema: ProfileSchema, tables: dict[str, pd.DataFrame], catalog: Catalog
) -> None:
    logger = make_engine(schema, tables, catalog, UniformRandom(seed=1))
    path = tmp_path / "events.sqlite"
    write_engine_log(path, logger, 400, seed=2)
    data = load_engine_log(path)
    # A candidate engine: same features and catalog, LinUCB trained on the first half of the log.
    candidate = make_engine(schema, tables, catalog, LinUCB(alpha=0.2, epsilon=0.1, seed=5))
    plog = policy_log_from_logged(data, catalog=candidate.catalog)
    train, test = plog.split(0.5)
    assert train is not None
    candidate.policy = fit_policy(candidate.policy, train)
    model = tmp_path / "model.bandit"
    candidate.save(model)
    engine = Engine.load(model)
    before = state_snapshot(engine.policy)
    n_decisions = engine.n_decisions
    ev = evaluate_policy(engine, test, estimators=["ips", "snips", "dr", "replay"], seed=1)
    assert state_snapshot(engine.policy) == before and engine.n_decisions == n_decisions
    assert ev.method == "exact" and ev.n_rows == test.n_rows
    assert list(ev.estimates) == ["ips", "snips", "dr", "replay"]
    for name, est in ev.estimates.items():
        assert est.ci_low <= est.value <= est.ci_high, name
        assert ev.uplifts[name].value == pytest.approx(est.value - ev.logged.value)
    # Features from the logged chosen bundles equal the catalog's (nothing changed in between).
    from_log = policy_log_from_logged(data)
    chosen = np.unique(data.action)
    np.testing.assert_allclose(from_log.arm_features[chosen], plog.arm_features[chosen])
    # A model whose features do not match the log is refused with both sizes.
    with pytest.raises(ValidationError, match="contexts have 3 features but the model"):
        evaluate_policy(engine, sample_log(0, 10))


# -- Open Bandit Dataset adapter ---------------------------------------------------------------


def test_obd_adapter_gives_policies_items_as_arms() -> None:
    obd = load_obd(EXCERPT, behavior="random")
    X, arm_ids, Z = obd_policy_inputs(obd)
    assert arm_ids == tuple(str(i) for i in range(80)) and Z.shape[0] == 80
    assert X.shape == (300, obd.context.shape[1])
    log = policy_log_from_obd(obd)
    assert log.is_uniform() and log.position is not None
    policy = fit_policy(LinUCB(alpha=0.5, epsilon=0.1, seed=0), log.rows(range(150)))
    ev = evaluate_policy(policy, log.rows(range(150, 300)), estimators=["ips", "snips", "dm"])
    assert ev.n_actions == 80 and ev.method == "exact"
    # 0 clicks among these rows: every estimate is 0, and the report says the data is too thin.
    assert all(e.value == 0.0 for e in ev.estimates.values())
    assert any("only 0 of 150 rows have a non-zero reward" in w for w in ev.warnings)


# -- examples/obd_protocol.py on the committed excerpt -----------------------------------------


def _obd_example() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "obd_protocol.py"
    spec = importlib.util.spec_from_file_location("obd_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_obd_protocol_example_on_the_excerpt(capsys: pytest.CaptureFixture[str]) -> None:
    ex = _obd_example()
    bts = load_obd(EXCERPT, behavior="bts")
    table, sums = ex.bts_action_table(bts)
    assert table.shape == (80, 3)
    assert np.all(table >= 0) and np.allclose(table.sum(axis=0), 1.0)
    # One (item, position) by hand: count / sum(1 / pscore), then the position's normalisation.
    a, pos = int(bts.action[0]), int(bts.position[0])
    rows = (bts.action == a) & (bts.position == pos)
    by_hand = rows.sum() / (1.0 / bts.pscore[rows]).sum()
    assert table[a, pos] == pytest.approx(by_hand / sums[pos])
    unseen = np.setdiff1d(np.arange(80), bts.action[bts.position == pos])
    assert np.all(table[unseen, pos] == 0.0)

    result = ex.run_protocol(EXCERPT, seed=0)
    assert (result["n_random"], result["n_bts"]) == (300, 320)
    assert (result["clicks_random"], result["clicks_bts"]) == (0, 1)  # as the excerpt README says
    assert result["bts_on_policy"]["value"] == pytest.approx(1 / 320)
    ope = result["bts_ope"]
    assert list(ope.estimates) == ["ips", "snips", "dm", "dr", "sndr", "switch_dr"]
    for name, c in result["comparison"].items():
        assert c["difference"] == pytest.approx(c["estimate"] - 1 / 320)
        assert c["difference_ci_low"] <= c["difference"] <= c["difference_ci_high"]
        assert isinstance(c["consistent"], bool)
        # No click in the random excerpt: every estimate is 0, so the relative error is 1.
        assert c["estimate"] == 0.0 and c["relative_error"] == pytest.approx(1.0), name
    assert any("only 0 of 300 rows" in w for w in ope.warnings)
    engine = result["engine"]
    assert set(engine) == {"uniform", "epsilon_greedy", "linucb"}
    uni = engine["uniform"]["frozen"]
    # The uniform policy is the logging policy: IPS gives the logged mean with ESS = n.
    assert uni.estimates["ips"].value == uni.logged.value
    assert uni.estimates["ips"].ess == pytest.approx(uni.n_rows)
    for evs in engine.values():
        assert evs["frozen"].n_rows == 150 and evs["frozen"].method == "exact"
        online = evs["online"]
        assert "online_replay" in online.estimates or "online_replay" in online.skipped
    text = ex.format_outcome(result)
    for part in ("1. Ground truth", "2. Off-policy estimates", "3. Uplift", "4. Engine policies"):
        assert part in text
    assert "Outcome: about 40 clicks per 10,000 rows" in text

    assert ex.main([str(EXCERPT), "--no-engine"]) == 0
    assert "BTS rows (1 click)" in capsys.readouterr().out
    assert ex.main([str(EXCERPT / "absent")]) == 4
    assert "not an Open Bandit Dataset folder" in capsys.readouterr().err
