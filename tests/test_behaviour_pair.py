"""Issue 8: live behaviour state, pair features, the hybrid pair policies, auto exploration."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_engine import Engine
from bandit_engine.demo import demo_engine, demo_schema, demo_tables
from bandit_engine.features import Behaviour, BehaviourStore, ProfileSchema
from bandit_engine.policies.pair import PairTS, PairUCB
from bandit_engine.policies.registry import make_policy
from bandit_engine.policies.scale import AUTO_KAPPA, RewardMoments


def _tables() -> dict:
    t = demo_tables(0, start_time=1.7e9)
    return {"knowledge": t["knowledge"], "groupbuy": t["groupbuy"]}


def test_schema_declares_behaviour_and_round_trips() -> None:
    s = demo_schema()
    assert s.behaviour is not None and s.behaviour.name == "behaviour"
    assert ProfileSchema.from_dict(s.to_dict()) == s
    fm = s.fit(_tables())
    assert fm.behaviour == s.behaviour
    assert type(fm).from_dict(fm.to_dict()).behaviour == s.behaviour


def test_behaviour_features_follow_clicks_and_decay() -> None:
    e = demo_engine(0, policy="pair_ucb", start_time=1.7e9)
    t = 1.7e9 + 100
    d = e.decide("U000001", now=t)
    e.report(d.decision_id, "click", at=t)
    b = e.behaviour
    assert b is not None
    key = b.key("U000001")
    row = e.catalog.row(d.bundle_id)
    f_now = b.pair(key, t, np.array([row]))[0]
    f_later = b.pair(key, t + 7 * 86400, np.array([row]))[0]  # one half-life later
    clicks = [i for i, n in enumerate(b.spec.pair_feature_names()) if n.endswith(".clicks")]
    assert np.all(f_now[clicks] > 0)
    np.testing.assert_allclose(np.expm1(f_later[clicks]), 0.5 * np.expm1(f_now[clicks]), rtol=1e-5)
    ux = np.zeros(6)  # the user-level features (in x only with in_context=True)
    b.user_vector(key, t, ux)
    assert ux[0] == 1.0 and ux[5] == 0.0  # has history, has clicked


def test_raw_ids_never_stored_and_state_round_trips(tmp_path) -> None:
    e = demo_engine(0, policy="pair_ts", start_time=1.7e9)
    t = 1.7e9 + 100
    for i in range(40):
        d = e.decide(f"U{i + 1:06d}", now=t + i)
        e.report(d.decision_id, "click", at=t + i)
    path = tmp_path / "e.bandit"
    e.save(path)
    assert b"U000001" not in path.read_bytes()
    e2 = Engine.load(path)
    e2.load_profiles(_tables())
    for i in range(40):
        a = e.decide(f"U{i + 1:06d}", now=t + 1e5 + i)
        c = e2.decide(f"U{i + 1:06d}", now=t + 1e5 + i)
        assert a.bundle_id == c.bundle_id and a.propensity == c.propensity


def test_lru_bound_and_forget() -> None:
    store = BehaviourStore(Behaviour("b", max_users=100))

    for u in range(250):
        store.observe_decision(store.key(f"u{u}"), 0, float(u))
    assert len(store) <= 100
    assert store.n_evicted >= 150
    assert store.key("u249") in store.index  # most recent kept
    assert store.forget("u249") and store.key("u249") not in store.index


@pytest.mark.parametrize("cls", [PairUCB, PairTS])
def test_pair_policy_learns_shared_structure_and_scores_new_arms(cls) -> None:
    rng = np.random.default_rng(0)
    k, p = 8, 5
    beta = np.array([0.0, 0.5, -0.5, 0.3, 0.0])
    pol = cls(seed=1)
    Z = rng.normal(size=(k, p))
    Z[:, 0] = 1.0
    arms = [f"a{i}" for i in range(k)]
    best = int((Z @ beta).argmax())
    for _ in range(1500):  # logged data from a uniform policy
        i = int(rng.integers(k))
        r = float(Z[i] @ beta + 0.3 * rng.normal())
        pol.update(np.ones(1), arms[i], Z[i], r, 1.0 / k)
    true = Z @ beta
    picks = [pol.choose(np.ones(1), arms, Z).index for _ in range(50)]
    assert true[np.array(picks)].mean() > true.max() - 0.05  # (near-)best arm
    # a new arm with the best features is scored from them (no data of its own)
    z_new = Z[best] + 0.5 * np.sign(beta)
    s = pol.score_batch(np.ones((1, 1)), ["new"], z_new[None, :])
    assert s[0, 0] > (Z @ beta).max()


def test_pair_ucb_propensities_are_exact() -> None:
    rng = np.random.default_rng(3)
    pol = PairUCB(epsilon=0.2, seed=0)
    Z = rng.normal(size=(4, 3))
    arms = ["a", "b", "c", "d"]
    probs = pol.probabilities(np.ones(1), arms, Z)
    counts = np.zeros(4)
    for _ in range(4000):
        counts[pol.choose(np.ones(1), arms, Z).index] += 1
    np.testing.assert_allclose(counts / 4000, probs, atol=0.03)


def test_auto_scale_follows_reward_scale() -> None:
    m = RewardMoments()
    for r in np.random.default_rng(0).normal(0, 2.0, 5000):
        m.add(float(r))
    assert m.scale("auto") == pytest.approx(AUTO_KAPPA * 2.0, rel=0.05)
    assert m.scale(0.3) == 0.3
    for name in ("linucb", "lin_ts", "pair_ucb", "pair_ts"):
        pol = make_policy(name, seed=0)
        assert (
            pol.get_params()["alpha" if "ucb" in name else ("v" if name == "lin_ts" else "alpha")]
            == "auto"
        )


def test_engine_path_with_behaviour_decides_for_anonymous_and_new_users() -> None:
    e = demo_engine(0, policy="pair_ucb", start_time=1.7e9)
    d = e.decide(None, now=1.7e9 + 5)
    assert d.propensity > 0
    d = e.decide("never-seen-user", now=1.7e9 + 6)
    e.report(d.decision_id, "order", value=50.0, at=1.7e9 + 6)
    assert len(e.behaviour) >= 1


# -- odd input: a clear rule, nothing lost, the state stays bounded ---------------------------
def _bound_store(**kwargs: object) -> tuple[BehaviourStore, Engine]:
    e = demo_engine(0, policy="pair_ucb", start_time=1.7e9)
    assert e.behaviour is not None
    store = BehaviourStore(Behaviour("b", **kwargs))  # type: ignore[arg-type]
    store.bind(e.catalog)
    return store, e


def test_clock_going_backwards_counts_the_event_in_full() -> None:
    store, e = _bound_store()
    key, t = store.key("u"), 1.7e9 + 1000
    row = e.catalog.row(e.catalog.bundle_ids[0])
    store.observe_decision(key, row, t)
    store.observe_event(key, row, "click", t - 500)  # earlier than the row's clock
    f = store.pair(key, t, np.array([row]))[0]
    clicks = [i for i, n in enumerate(store.spec.pair_feature_names()) if n.endswith(".clicks")]
    np.testing.assert_allclose(np.expm1(f[clicks]), 1.0)  # counted once, not decayed backwards
    earlier = store.pair(key, t - 10_000, np.array([row]))[0]  # reading in the past: no growth
    np.testing.assert_array_equal(earlier, f)


def test_a_user_with_100000_events_keeps_one_bounded_row() -> None:
    store, e = _bound_store(half_life_days=1.0)
    key, t = store.key("heavy"), 1.7e9
    rows = [e.catalog.row(b) for b in e.catalog.bundle_ids[:5]]
    width = store.width
    for i in range(100_000):
        store.observe_event(key, rows[i % 5], "click" if i % 3 else "order", t + 60.0 * i)
    assert len(store) == 1 and store.width == width and store.rows.shape[1] == width
    f = store.pair(key, t + 6e6, np.asarray(rows))
    assert np.all(np.isfinite(f))
    # a click every 90 s with a one-day half-life: about 960 * 1.44 decayed clicks at most
    assert np.expm1(f).max() < 2000


def test_expired_rows_read_as_no_history_before_and_after_the_sweep() -> None:
    store, e = _bound_store(ttl_days=1.0)
    key, t = store.key("idle"), 1.7e9
    row = e.catalog.row(e.catalog.bundle_ids[0])
    store.observe_event(key, row, "click", t)
    assert store.pair(key, t + 3600, np.array([row])).any()
    later = t + 2 * 86400
    assert not store.pair(key, later, np.array([row])).any()  # expired, not yet swept
    assert store.sweep(later) == 1 and len(store) == 0
    assert not store.pair(key, later, np.array([row])).any()


def test_non_finite_prices_count_as_zero() -> None:
    e = demo_engine(0, policy="pair_ucb", start_time=1.7e9)
    deals = e.catalog.deals().drop(columns="active")
    deals.loc[deals.index[0], "price"] = np.inf
    store = BehaviourStore(Behaviour("b"))
    try:
        e.catalog.add_deals(deals.iloc[:1])
    except Exception as err:  # the catalog may refuse it first: that is a clear error too
        assert "price" in str(err)
        return
    store.bind(e.catalog)
    key, row = store.key("u"), 0
    store.observe_event(key, row, "click", 1.7e9)
    assert np.all(np.isfinite(store.pair(key, 1.7e9, np.arange(len(e.catalog)))))


def test_forget_behaviour_erases_the_row_and_nothing_else() -> None:
    e = demo_engine(0, policy="pair_ucb", start_time=1.7e9)
    t = 1.7e9 + 100
    for u in ("U000001", "U000002"):
        d = e.decide(u, now=t)
        e.report(d.decision_id, "click", at=t)
    b = e.behaviour
    assert b is not None and len(b) == 2
    assert e.forget_behaviour("U000001") and not e.forget_behaviour("U000001")
    assert len(b) == 1 and b.key("U000001") not in b.index and b.key("U000002") in b.index
    _, _, Z = e.policy_inputs("U000001", now=t + 1)
    names = e.behaviour.spec.pair_feature_names()
    assert not Z[:, -len(names) :].any()  # the forgotten user reads as no history


def test_static_width_cache_gives_the_same_scores_and_choices() -> None:
    """The per-arm cache of the rows' bundle-only prefix (policies/_pair_cache.py) is speed only:
    scores agree with the direct quadratic form to rounding, choices are identical, and a
    row whose 'static' prefix changes is recomputed rather than trusted."""
    rng = np.random.default_rng(3)
    n_arms, ps, pd = 12, 9, 4
    static = rng.normal(size=(n_arms, ps))
    arms = [f"a{i}" for i in range(n_arms)]
    plain, cached = PairUCB(seed=1, refresh=50), PairUCB(seed=1, refresh=50)
    cached.static_columns = ps
    for t in range(400):
        offered = np.sort(rng.choice(n_arms, size=6, replace=False))
        S = np.hstack([static[offered], rng.normal(size=(6, pd))])
        if t == 200:
            static[offered[0]] += 1.0  # a catalog change under the cache's feet
            S[0, :ps] = static[offered[0]]
        ids = [arms[i] for i in offered]
        a, b = plain.choose(np.ones(1), ids, S), cached.choose(np.ones(1), ids, S)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-9, atol=1e-12)
        assert a.index == b.index and a.propensity == b.propensity
        r = float(rng.random() < 0.3)
        plain.update(np.ones(1), ids[a.index], S[a.index], r)
        cached.update(np.ones(1), ids[b.index], S[b.index], r)
    cached.choose(np.ones(1), arms[:6], np.hstack([static[:6], rng.normal(size=(6, pd))]))
    assert cached._wcache is not None and cached._wcache.valid.sum() >= 6  # the cache was used


def test_batch_scores_use_each_users_live_behaviour() -> None:
    e = demo_engine(0, policy="pair_ucb", start_time=1.7e9)
    t = 1.7e9 + 100
    for i in range(300):  # some learning, and U000001's own clicks
        user = "U000001" if i % 3 == 0 else f"U{2 + i:06d}"
        d = e.decide(user, now=t + i)
        if user == "U000001" or i % 7 == 0:
            e.report(d.decision_id, "click", at=t + i)
    e.flush(t + 400)
    tables = _tables()
    now = t + 500
    frame = e.score(
        {k: v[v["user_id"].isin(["U000001", "U000002"])] for k, v in tables.items()}, now=now
    )
    for user in ("U000001", "U000002"):
        x, ids, Z = e.policy_inputs(user, now=now)
        expected = e.policy.score_batch(x[None], ids, Z)[0]
        np.testing.assert_allclose(frame.loc[user, list(ids)].to_numpy(), expected, rtol=1e-12)
    # the clicks moved U000001's own rows: its scores differ from a no-history user's rows
    x, ids, Z = e.policy_inputs("U000001", now=now)
    anon = e.policy_inputs(None, e.profile_of("U000001"), now=now)[2]
    assert not np.array_equal(Z, anon)


def test_pair_update_is_li_et_al_algorithm_2() -> None:
    """The rank-one update equals the paper's A0 / b0 steps (per-arm feature 1) and keeps the
    inverse: A0 += B B'/A - B_new B_new'/A_new + s s', b0 += B b/A - B_new b_new/A_new + r s."""
    rng = np.random.default_rng(11)
    p, l2, l2_arm = 6, 1.0, 4.0
    policy = PairUCB(l2=l2, l2_arm=l2_arm, refresh=10_000, seed=0)
    A0, b0 = l2 * np.eye(p), np.zeros(p)
    Aa: dict[str, float] = {}
    Ba: dict[str, np.ndarray] = {}
    ba: dict[str, float] = {}
    arms = [f"a{i}" for i in range(5)]
    for _ in range(300):
        arm = arms[int(rng.integers(5))]
        s, r = rng.normal(size=p), float(rng.normal())
        a, B, b = Aa.get(arm, l2_arm), Ba.get(arm, np.zeros(p)), ba.get(arm, 0.0)
        a2, B2, b2 = a + 1.0, B + s, b + r
        A0 += np.outer(B, B) / a - np.outer(B2, B2) / a2 + np.outer(s, s)
        b0 += B * b / a - B2 * b2 / a2 + r * s
        Aa[arm], Ba[arm], ba[arm] = a2, B2, b2
        policy.choose(np.ones(1), arms, rng.normal(size=(5, p)))
        policy.update(np.ones(1), arm, s, r)
    np.testing.assert_allclose(policy.A0_, A0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(policy.b0_, b0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(policy.A0inv_ @ A0, np.eye(p), atol=1e-8)


def _grouped_history(hierarchical: bool) -> tuple[PairUCB, list[tuple[str, np.ndarray, float]]]:
    """2,000 updates of a world where six deals' own effects are small (sd 0.1 on rewards of
    sd ~0.3): columns 0-5 deal one-hots (deal 5 never shown), 6 intercept, 7 a numeric feature."""
    rng = np.random.default_rng(5)
    effects = rng.normal(0.0, 0.1, size=6)
    policy = PairUCB(refresh=200, hierarchical=hierarchical, seed=0)
    policy.prior_groups = (np.arange(6),)
    arms = [f"d{d}c{c}" for d in range(5) for c in range(2)]
    history = []
    for _ in range(2_000):
        i = int(rng.integers(len(arms)))
        s = np.zeros(8)
        s[i // 2], s[6], s[7] = 1.0, 1.0, rng.normal()
        r = float(0.1 + effects[i // 2] + 0.05 * s[7] + rng.normal(0.0, 0.3))
        policy.update(np.ones(1), arms[i], s, r)
        history.append((arms[i], s, r))
    return policy, history


def test_empirical_prior_is_the_em_fixed_point_and_keeps_the_hybrid_system_exact() -> None:
    policy, history = _grouped_history(True)
    g = np.arange(6)
    # the deal effects are small, so the group's prior tightens well beyond l2 = 1 (and is one
    # value for the whole group, the never-shown deal 5 included)
    assert np.all(policy.prior_[g] == policy.prior_[0])
    assert 3.0 < policy.prior_[0] < 1e3  # tighter than l2, not at the cap
    assert policy.prior_[6] == policy.prior_[7] == 1.0  # not in a group: l2
    # EM fixed point (the last refresh ran after the last update): sigma^2 / lambda equals the
    # mean of beta_j^2 + sigma^2 (A0^-1)_jj over the seen columns, to the 1e-3 stopping rule
    sigma2 = policy.moments_.sigma(policy.sigma0, policy.n0) ** 2
    inv = np.linalg.inv(policy.A0_)
    beta = inv @ policy.b0_
    seen = np.arange(5)
    tau2 = float(np.mean(beta[seen] ** 2 + sigma2 * np.diag(inv)[seen]))
    np.testing.assert_allclose(sigma2 / policy.prior_[0], tau2, rtol=5e-3)
    # the bundles' own prior moved too, and the hybrid system is exactly the one built from
    # scratch with the final priors: A0 = diag(prior) + sum s s' - sum_a B_a B_a' / A_a
    assert policy.arm_prior_ > policy.l2_arm
    A0, b0 = np.diag(policy.prior_), np.zeros(8)
    n: dict[str, float] = {}
    B: dict[str, np.ndarray] = {}
    b: dict[str, float] = {}
    for arm, s, r in history:
        A0 += np.outer(s, s)
        b0 += r * s
        n[arm] = n.get(arm, 0.0) + 1.0
        B[arm] = B.get(arm, np.zeros(8)) + s
        b[arm] = b.get(arm, 0.0) + r
    for arm in n:
        a = policy.arm_prior_ + n[arm]
        A0 -= np.outer(B[arm], B[arm]) / a
        b0 -= B[arm] * b[arm] / a
    np.testing.assert_allclose(policy.A0_, A0, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(policy.b0_, b0, rtol=1e-8, atol=1e-8)


def test_a_new_deal_is_explored_with_the_spread_existing_deals_show() -> None:
    """The goal of the empirical prior: a never-shown deal's bonus is of the size the existing
    deals' effects justify, not the size of the whole reward scale."""
    new = np.zeros((1, 8))
    new[0, 5], new[0, 6] = 1.0, 1.0  # deal 5, never shown
    old = np.zeros((1, 8))
    old[0, 0], old[0, 6] = 1.0, 1.0
    widths = {}
    for hierarchical in (True, False):
        policy, _ = _grouped_history(hierarchical)
        _, var_new, _, _ = policy._posterior(new, policy._rows(["new"], create=False))
        _, var_old, _, _ = policy._posterior(old, policy._rows(["d0c0"], create=False))
        widths[hierarchical] = float(np.sqrt(var_new[0]) - np.sqrt(var_old[0]))
    # with the fixed prior the new deal's extra width is ~1 (prior sd 1 on its column); the
    # deals' true effects have sd 0.1 on rewards of sd 0.3, so the empirical prior cuts it to
    # well under a third of that (the margin leaves room for the estimate's noise)
    assert widths[False] > 0.5
    assert widths[True] < widths[False] / 3
