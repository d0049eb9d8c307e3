"""Tests of the synthetic two-platform world (bandit_engine.simulation.world)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from bandit_engine.errors import ConfigError, NotFoundError, ValidationError
from bandit_engine.simulation import (
    AGE_BANDS,
    CITIES,
    CUISINES,
    FORMATS,
    MEMBERSHIPS,
    TOPICS,
    DriftConfig,
    RewardWeights,
    World,
    WorldConfig,
)

DAY = 86400.0
SMALL = WorldConfig(n_users=600, n_deals=12, n_courses=6, n_cities=3)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(), seed=11)


def _tables(w: World) -> list[pd.DataFrame]:
    return [w.knowledge, w.groupbuy, w.deals, w.courses, w.bundles]


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_rates() -> None:
    a = World.generate(SMALL, seed=5)
    b = World.generate(SMALL, seed=5)
    for ta, tb in zip(_tables(a), _tables(b), strict=True):
        pd.testing.assert_frame_equal(ta, tb)
    idx = np.arange(a.n_bundles)
    for u in (0, 17, 599):
        for x, y in zip(a.true_rates(u, idx, 0.0), b.true_rates(u, idx, 0.0), strict=True):
            np.testing.assert_array_equal(x, y)
    ta, ua = a.arrivals(50, np.random.default_rng(3))
    tb, ub = b.arrivals(50, np.random.default_rng(3))
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_array_equal(ua, ub)


def test_different_seeds_give_different_worlds() -> None:
    a = World.generate(SMALL, seed=5)
    b = World.generate(SMALL, seed=6)
    assert not a.groupbuy["avg_ticket"].equals(b.groupbuy["avg_ticket"])
    assert not a.deals["price"].equals(b.deals["price"])
    idx = np.arange(min(a.n_bundles, b.n_bundles))
    assert not np.allclose(a.true_rates(0, idx, 0.0)[0], b.true_rates(0, idx, 0.0)[0])


def test_generator_seed_is_as_reproducible_as_an_int() -> None:
    a = World.generate(SMALL, seed=np.random.default_rng(9))
    b = World.generate(SMALL, seed=np.random.default_rng(9))
    pd.testing.assert_frame_equal(a.knowledge, b.knowledge)
    with pytest.raises(ConfigError, match="seed"):
        World.generate(SMALL, seed=None)  # type: ignore[arg-type]


def test_users_do_not_depend_on_catalog_size() -> None:
    # Users, tables and catalog draw from separate streams: a bigger catalog, same people.
    a = World.generate(SMALL, seed=5)
    b = World.generate(replace(SMALL, n_deals=30), seed=5)
    pd.testing.assert_frame_equal(a.knowledge, b.knowledge)
    pd.testing.assert_frame_equal(a.groupbuy, b.groupbuy)


# -- tables ---------------------------------------------------------------------------------------


def test_tables_follow_the_column_contract(world: World) -> None:
    assert list(world.knowledge.columns) == [
        "user_id",
        "age_band",
        "membership",
        "topics",
        "courses_bought",
        "spend_knowledge",
        "last_course_at",
    ]
    assert list(world.groupbuy.columns) == [
        "user_id",
        "city",
        "cuisines",
        "avg_ticket",
        "orders_90d",
        "coupon_rate",
        "last_order_at",
    ]
    assert list(world.deals.columns) == [
        "deal_id",
        "restaurant",
        "cuisine",
        "city",
        "price",
        "discount",
        "valid_from",
        "valid_to",
    ]
    assert list(world.courses.columns) == ["course_id", "topic", "price", "rating", "format"]
    assert list(world.bundles.columns) == ["deal_id", "course_id", "bundle_id"]
    assert isinstance(world.knowledge["age_band"].dtype, pd.CategoricalDtype)
    assert list(world.knowledge["age_band"].cat.categories) == list(AGE_BANDS)
    assert world.knowledge["courses_bought"].dtype == np.int64
    assert world.groupbuy["orders_90d"].dtype == np.int64
    for col in ("spend_knowledge", "last_course_at"):
        assert world.knowledge[col].dtype == np.float64
    for col in ("avg_ticket", "coupon_rate", "last_order_at"):
        assert world.groupbuy[col].dtype == np.float64


def test_table_values_are_plausible(world: World) -> None:
    k, g, d, c = world.knowledge, world.groupbuy, world.deals, world.courses
    start = world.config.start_time
    assert set(k["membership"]) <= set(MEMBERSHIPS)
    assert all(set(t) <= set(TOPICS) and len(t) == len(set(t)) for t in k["topics"])
    never = k["courses_bought"] == 0
    assert never.any() and (~never).any()
    assert k.loc[never, "last_course_at"].isna().all()
    assert (k.loc[never, "topics"].map(len) == 0).all()
    assert (k.loc[~never, "last_course_at"] < start).all()
    assert (k.loc[~never, "topics"].map(len) >= 1).all()
    assert (k["spend_knowledge"] >= 0).all()
    assert set(g["city"]) == set(CITIES[: world.config.n_cities])
    assert all(set(x) <= set(CUISINES) and len(x) >= 1 for x in g["cuisines"])
    assert g["coupon_rate"].between(0.0, 1.0).all()
    assert (g["avg_ticket"] > 0).all() and (g["orders_90d"] >= 0).all()
    assert (g["last_order_at"] < start).all()
    # No order within 90 days exactly when orders_90d is 0.
    recent = g["last_order_at"] >= start - 90 * DAY
    assert (recent == (g["orders_90d"] > 0)).all()
    assert d["discount"].between(0.0, 0.7).all() and (d["price"] > 0).all()
    assert (d["valid_from"] <= start).all() and (d["valid_to"] > start).all()
    assert set(d["cuisine"]) <= set(CUISINES)
    assert c["rating"].between(1.0, 5.0).all() and (c["price"] > 0).all()
    assert set(c["format"]) <= set(FORMATS) and set(c["topic"]) <= set(TOPICS)
    b = world.bundles
    assert (b["bundle_id"] == b["deal_id"] + "+" + b["course_id"]).all()
    assert len(b) == world.config.n_deals * world.config.n_courses == world.n_bundles
    assert b["bundle_id"].is_unique


def test_observable_columns_track_hidden_truth(world: World) -> None:
    # The tables are noisy views of the truth; correlations near 0 would mean no usable signal.
    # Measured about 0.68 (coupon rate) and 0.93 (log ticket); 0.5 and 0.8 leave room for seeds.
    g = world.groupbuy.merge(world.truth, on="user_id")
    assert np.corrcoef(g["coupon_rate"], g["price_sensitivity"])[0, 1] > 0.5
    assert np.corrcoef(np.log(g["avg_ticket"]), np.log(g["comfortable_ticket"]))[0, 1] > 0.8


def test_sampled_bundles_cover_every_deal() -> None:
    w = World.generate(replace(SMALL, bundles=30), seed=2)
    assert len(w.bundles) == 30 and w.bundles["bundle_id"].is_unique
    assert set(w.bundles["deal_id"]) == set(w.deals["deal_id"])


# -- population -----------------------------------------------------------------------------------


def test_overlap_shares_are_respected() -> None:
    cfg = WorldConfig(
        n_users=8000, p_both=0.3, p_knowledge_only=0.25, p_groupbuy_only=0.2, n_deals=5, n_courses=2
    )
    w = World.generate(cfg, seed=4)
    k, g = set(w.knowledge["user_id"]), set(w.groupbuy["user_id"])
    n = cfg.n_users
    shares = {
        "both": len(k & g) / n,
        "knowledge": len(k - g) / n,
        "groupbuy": len(g - k) / n,
        "new": (n - len(k | g)) / n,
    }
    expected = {"both": 0.3, "knowledge": 0.25, "groupbuy": 0.2, "new": 0.25}
    for name, p in expected.items():
        # Binomial share: 5 standard errors (about 0.024 here) keeps false failures negligible.
        tol = 5 * math.sqrt(p * (1 - p) / n)
        assert abs(shares[name] - p) < tol, (name, shares[name])
        assert (w.truth["segment"] == name).mean() == pytest.approx(shares[name])


def test_new_users_have_no_platform_rows(world: World) -> None:
    truth = world.truth
    new = np.flatnonzero(truth["segment"] == "new")
    assert new.size > 0
    ids = set(truth["user_id"].iloc[new])
    assert not ids & set(world.knowledge["user_id"])
    assert not ids & set(world.groupbuy["user_id"])
    for u in new[:20]:
        assert world.profile(int(u)) == {"knowledge": None, "groupbuy": None}
        assert world.segment(int(u)) == "new"
        assert world.eligible(int(u), world.config.start_time).size > 0


def test_add_new_users_makes_profileless_users_with_truth() -> None:
    w = World.generate(SMALL, seed=3)
    n0 = w.n_users
    idx = w.add_new_users(50, np.random.default_rng(1), city=CITIES[1])
    np.testing.assert_array_equal(idx, np.arange(n0, n0 + 50))
    assert w.n_users == n0 + 50
    assert len(w.knowledge) + len(w.groupbuy) == len(World.generate(SMALL, seed=3).knowledge) + len(
        World.generate(SMALL, seed=3).groupbuy
    )
    t = w.config.start_time
    for u in idx[:10]:
        assert w.profile(int(u)) == {"knowledge": None, "groupbuy": None}
        assert w.segment(int(u)) == "new"
        assert w.user_id(int(u)) == f"U{u:06d}"
        el = w.eligible(int(u), t)
        assert set(w.deals.loc[w.deals["deal_id"].isin(w.bundles["deal_id"][el]), "city"]) == {
            CITIES[1]
        }
        pc, po, v = w.true_rates(int(u), el, t)
        assert ((pc > 0) & (pc < 1) & (po > 0) & (po < 1) & (v > 0)).all()
    _, who = w.arrivals(200, np.random.default_rng(0), users=idx)
    assert set(who) <= set(idx)
    with pytest.raises(ValidationError, match="city"):
        w.add_new_users(5, np.random.default_rng(1), city="atlantis")


def test_profile_matches_table_rows_and_is_a_copy(world: World) -> None:
    row = world.knowledge.iloc[3]
    u = int(row["user_id"][1:])
    p = world.profile(u)
    assert p["knowledge"] is not None
    assert p["knowledge"]["user_id"] == row["user_id"]
    assert p["knowledge"]["topics"] == list(row["topics"])
    assert p["knowledge"]["age_band"] == row["age_band"]
    assert set(p["knowledge"]) == set(world.knowledge.columns)
    p["knowledge"]["topics"].append("mutated")
    again = world.profile(u)["knowledge"]
    assert again is not None and "mutated" not in again["topics"]
    with pytest.raises(ValidationError, match="user_index"):
        world.profile(world.n_users)
    with pytest.raises(ValidationError, match="user_index"):
        world.profile("3")  # type: ignore[arg-type]


# -- response model -------------------------------------------------------------------------------


def _uniform_and_best(w: World, users: range, t: float) -> tuple[float, float, float]:
    """Mean CTR and orders per click of a uniform choice among eligible bundles, and mean best CTR,
    computed through the public per-user path (independent of World.diagnostics)."""
    ctr, orders, best = [], [], []
    for u in users:
        pc, po, _ = w.true_rates(u, w.eligible(u, t), t)
        ctr.append(pc.mean())
        orders.append((pc * po).mean())
        best.append(pc.max())
    return float(np.mean(ctr)), float(np.mean(orders) / np.mean(ctr)), float(np.mean(best))


def test_base_rates_look_like_marketing(world: World) -> None:
    t = world.config.start_time
    ctr, per_click, best = _uniform_and_best(world, range(1500), t)
    # Calibrated to 4% clicks and 20% orders per click on the first 4000 users; any 1500 of them
    # land within a few tenths of a percent, far inside the ranges the brief asks for.
    assert 0.01 <= ctr <= 0.10
    assert ctr == pytest.approx(0.04, abs=0.004)
    assert 0.15 <= per_click <= 0.30
    # Best bundle per user: ~8-15% asked; measured 0.135-0.148 over seeds 0-9.
    assert 0.08 <= best <= 0.18
    d = world.diagnostics(max_users=1500)
    assert d["uniform_ctr"] == pytest.approx(ctr, rel=1e-9)
    assert d["orders_per_click"] == pytest.approx(per_click, rel=1e-9)
    assert d["best_ctr"] == pytest.approx(best, rel=1e-9)


def test_base_ctr_setting_moves_the_calibration() -> None:
    w = World.generate(replace(SMALL, base_ctr=0.02), seed=1)
    d = w.diagnostics()
    assert d["uniform_ctr"] == pytest.approx(0.02, rel=0.05)


def _context_free_and_oracle(w: World, users: range, t: float) -> tuple[float, float]:
    """Mean click probability of each user's best bundle (oracle) and of the single bundle that is
    best on average in the user's city (the best a context-free policy can do there)."""
    by_city: dict[int, list[np.ndarray]] = {}
    oracle = []
    truth_city = w.truth["city"]
    for u in users:
        pc, _, _ = w.true_rates(u, w.eligible(u, t), t)
        oracle.append(pc.max())
        by_city.setdefault(CITIES.index(truth_city.iloc[u]), []).append(pc)
    fixed = []
    for rows in by_city.values():
        m = np.stack(rows)
        fixed.extend(m[:, int(np.argmax(m.mean(axis=0)))])
    return float(np.mean(fixed)), float(np.mean(oracle))


def test_oracle_clearly_beats_the_best_fixed_bundle(world: World) -> None:
    t = world.config.start_time
    fixed, oracle = _context_free_and_oracle(world, range(1500), t)
    # Measured 1.71-2.00 (World.diagnostics, seeds 0-9, 2000 users); the brief asks for >= 1.3x.
    assert oracle / fixed >= 1.4
    assert world.diagnostics(max_users=1500)["contextual_lift"] == pytest.approx(oracle / fixed)


def test_context_strength_controls_the_advantage() -> None:
    lift = {
        cs: World.generate(WorldConfig(n_users=1500, context_strength=cs), seed=2).diagnostics()[
            "contextual_lift"
        ]
        for cs in (0.0, 1.0)
    }
    # Without context only the hidden per-pair taste separates users (measured lift 1.25-1.35);
    # with it the lift is 1.7-2.0. A gap of 0.25 is well inside both measurements.
    assert lift[1.0] > lift[0.0] + 0.25


def _user_features(w: World, u: int) -> np.ndarray:
    """A plain encoding of the observable profile (what a feature map would build)."""
    p = w.profile(u)
    k, g = p["knowledge"], p["groupbuy"]
    x = [1.0]
    if k is None:
        x += [0.0] * 19
    else:
        x += [1.0, *(float(k["age_band"] == a) for a in AGE_BANDS)]
        x += [float(k["membership"] == m) for m in MEMBERSHIPS]
        x += [float(t in k["topics"]) for t in TOPICS] + [math.log1p(k["courses_bought"])]
    if g is None:
        x += [0.0] * 13
    else:
        days = (w.config.start_time - g["last_order_at"]) / DAY
        x += [1.0, *(float(c in g["cuisines"]) for c in CUISINES)]
        x += [math.log(g["avg_ticket"] / 100), g["coupon_rate"], math.log1p(g["orders_90d"])]
        x += [math.log1p(days) / 5]
    return np.array(x)


def _bundle_features(w: World) -> np.ndarray:
    d = w.deals.set_index("deal_id").loc[w.bundles["deal_id"]]
    c = w.courses.set_index("course_id").loc[w.bundles["course_id"]]
    lp = np.log(d["price"].to_numpy() / 100)
    cols = [np.ones(len(d))]
    cols += [(d["cuisine"].to_numpy() == q).astype(float) for q in CUISINES]
    cols += [(c["topic"].to_numpy() == q).astype(float) for q in TOPICS]
    cols += [(c["format"].to_numpy() == q).astype(float) for q in FORMATS]
    cols += [lp, lp**2, d["discount"].to_numpy(), np.log(c["price"].to_numpy() / 100)]
    cols += [c["rating"].to_numpy() - 4.3]
    return np.stack(cols, axis=1)


def test_a_linear_model_on_profiles_beats_context_free(world: World) -> None:
    # Fit logit p_click ~ vec(x z^T) on the true logits of 30 eligible bundles for each of 1200
    # users (full information: the ceiling of a linear contextual policy), then let it choose for
    # 1000 other users. Measured over seeds 0-5: it explains 55-60% of the within-user variance,
    # its choices click 1.24-1.41x as often as the best bundle per city and at most 0.75x as often
    # as the oracle's. The thresholds sit well outside those ranges.
    t = world.config.start_time
    Z = _bundle_features(world)
    rng = np.random.default_rng(0)
    rows, targets = [], []
    for u in range(1200):
        b = rng.choice(world.eligible(u, t), 30, replace=False)
        pc, _, _ = world.true_rates(u, b, t)
        rows.append(np.einsum("i,bj->bij", _user_features(world, u), Z[b]).reshape(len(b), -1))
        targets.append(np.log(pc / (1 - pc)))
    F, y = np.concatenate(rows), np.concatenate(targets)
    M = np.linalg.solve(F.T @ F + np.eye(F.shape[1]), F.T @ y).reshape(33, Z.shape[1])
    test_users = range(1200, 2200)
    chosen, resid, total = [], 0.0, 0.0
    for u in test_users:
        el = world.eligible(u, t)
        pc, _, _ = world.true_rates(u, el, t)
        score = Z[el] @ (M.T @ _user_features(world, u))
        chosen.append(pc[np.argmax(score)])
        logit = np.log(pc / (1 - pc))
        resid += float((((logit - logit.mean()) - (score - score.mean())) ** 2).sum())
        total += float(((logit - logit.mean()) ** 2).sum())
    fixed, oracle = _context_free_and_oracle(world, test_users, t)
    assert 1 - resid / total > 0.4  # the observable columns carry most of the signal ...
    assert float(np.mean(chosen)) > 1.1 * fixed  # ... enough for context to pay ...
    assert float(np.mean(chosen)) < 0.9 * oracle  # ... but not all of it.


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p / (1 - p))
    return out


def test_cross_domain_effects_show_through_the_profiles(world: World) -> None:
    # Users whose knowledge profile lists fitness lean towards vegetarian deals: their logit gap
    # (vegetarian minus other eligible deals) exceeds others' by 0.38-0.49 (seeds 0-3).
    t = world.config.start_time
    deal = world.deals.set_index("deal_id").loc[world.bundles["deal_id"]]
    veg = (deal["cuisine"] == "vegetarian").to_numpy()
    gap: dict[bool, list[float]] = {True: [], False: []}
    for uid, topics in zip(world.knowledge["user_id"], world.knowledge["topics"], strict=True):
        el = world.eligible(int(uid[1:]), t)
        if veg[el].any() and not veg[el].all():
            lg = _logit(world.true_rates(int(uid[1:]), el, t)[0])
            gap["fitness" in topics].append(lg[veg[el]].mean() - lg[~veg[el]].mean())
    assert np.mean(gap[True]) - np.mean(gap[False]) > 0.2
    # Frequent coupon users respond more to discounts, in clicks and in orders: the slope of the
    # logit on the discount differs between the top and bottom coupon-rate quartiles by 0.58-1.14
    # (clicks) and 0.36-0.63 (orders) over seeds 0-3.
    discount = deal["discount"].to_numpy()
    g = world.groupbuy
    low, high = g["coupon_rate"].quantile([0.25, 0.75])
    slopes = {}
    for name, chosen in (("low", g["coupon_rate"] <= low), ("high", g["coupon_rate"] >= high)):
        click, order = [], []
        for uid in g.loc[chosen, "user_id"]:
            el = world.eligible(int(uid[1:]), t)
            pc, po, _ = world.true_rates(int(uid[1:]), el, t)
            click.append(np.polyfit(discount[el], _logit(pc), 1)[0])
            order.append(np.polyfit(discount[el], _logit(po), 1)[0])
        slopes[name] = np.array([np.mean(click), np.mean(order)])
    assert (slopes["high"] - slopes["low"] > 0.2).all()


def test_true_rates_shapes_ranges_and_reward(world: World) -> None:
    t = world.config.start_time
    idx = np.array([0, 5, 5, world.n_bundles - 1])
    pc, po, v = world.true_rates(3, idx, t)
    assert pc.shape == po.shape == v.shape == (4,)
    assert ((pc > 0) & (pc < 1) & (po > 0) & (po < 1) & (v > 0)).all()
    assert pc[1] == pc[2]
    w = RewardWeights(click=1.0, order=3.0, value_weight=0.01)
    r = world.expected_reward(3, idx, t, w)
    np.testing.assert_allclose(r, pc + 3.0 * pc * po + 0.01 * pc * po * v)
    as_map = world.expected_reward(3, idx, t, {"click": 1.0, "order": 3.0, "value_weight": 0.01})
    np.testing.assert_allclose(as_map, r)

    @dataclass
    class Spec:  # stands for bandit_engine.rewards.RewardSpec (same attribute names)
        click: float = 0.0
        order: float = 1.0
        value_weight: float = 0.0

    np.testing.assert_allclose(world.expected_reward(3, idx, t, Spec()), pc * po)
    np.testing.assert_allclose(world.expected_reward(3, idx, t), pc)
    with pytest.raises(ValidationError, match=r"reward_weights\.clicks"):
        world.expected_reward(3, idx, t, {"clicks": 1.0})
    with pytest.raises(ValidationError, match="reward_weights"):
        world.expected_reward(3, idx, t, 1.0)  # type: ignore[arg-type]


def test_true_rates_rejects_bad_indices(world: World) -> None:
    t = world.config.start_time
    with pytest.raises(ValidationError, match="bundle_index"):
        world.true_rates(0, np.array([world.n_bundles]), t)
    with pytest.raises(ValidationError, match="bundle_index"):
        world.true_rates(0, np.array([0.5]), t)
    with pytest.raises(ValidationError, match="user_index must be in"):
        world.true_rates(-1, np.array([0]), t)


def test_eligible_means_true_city_and_valid_deal(world: World) -> None:
    t = world.config.start_time + 40 * DAY  # some deals have expired by then
    city = world.truth["city"]
    deals = world.deals.set_index("deal_id")
    for u in (0, 1, 2, 50):
        el = world.eligible(u, t)
        d = deals.loc[world.bundles["deal_id"].iloc[el]]
        assert (d["city"] == city.iloc[u]).all()
        assert ((d["valid_from"] <= t) & (t < d["valid_to"])).all()
        ok = (deals["city"] == city.iloc[u]) & (deals["valid_from"] <= t) & (t < deals["valid_to"])
        assert len(el) == ok.sum() * world.config.n_courses
    assert len(world.eligible(0, t)) < len(world.eligible(0, world.config.start_time))


def test_foreign_city_deals_are_penalised() -> None:
    # The penalty is on the logit of bundles outside the user's true city only; calibration uses
    # own-city bundles, so own-city rates are untouched by the setting.
    rates = {}
    for pen in (0.0, 2.0):
        cfg = replace(SMALL, foreign_city_penalty=pen)
        w = World.generate(cfg, seed=8)
        rates[pen] = w.true_rates(0, np.arange(w.n_bundles), cfg.start_time)[0]
    own = np.zeros(w.n_bundles, dtype=bool)
    own[w.eligible(0, w.config.start_time)] = True
    own |= (
        w.deals.set_index("deal_id").loc[w.bundles["deal_id"], "city"] == w.truth["city"][0]
    ).to_numpy()
    np.testing.assert_allclose(rates[0.0][own], rates[2.0][own])
    logit = {k: np.log(v / (1 - v)) for k, v in rates.items()}
    np.testing.assert_allclose(logit[0.0][~own] - logit[2.0][~own], 2.0)


# -- drift ----------------------------------------------------------------------------------------


def test_no_drift_means_time_invariant_rates() -> None:
    w = World.generate(SMALL, seed=1)
    idx = np.arange(w.n_bundles)
    t0 = w.config.start_time
    np.testing.assert_array_equal(
        w.true_rates(4, idx, t0)[0], w.true_rates(4, idx, t0 + 60 * DAY)[0]
    )


def test_abrupt_drift_switches_at_the_given_time() -> None:
    cfg = replace(SMALL, drift=DriftConfig(kind="abrupt", at_days=3.0))
    w = World.generate(cfg, seed=1)
    still = World.generate(SMALL, seed=1)
    idx = np.arange(w.n_bundles)
    t0 = cfg.start_time
    switch = t0 + 3 * DAY
    # Before the switch the world is the undrifted one.
    np.testing.assert_allclose(w.true_rates(4, idx, switch - 1)[0], still.true_rates(4, idx, t0)[0])
    np.testing.assert_array_equal(
        w.true_rates(4, idx, switch)[0], w.true_rates(4, idx, switch + 30 * DAY)[0]
    )
    # Strength 0.8 keeps 0.6 of each taste: per-user logit correlation across eligible bundles
    # before/after measured ~0.76 (seed 1, 300 users); 0.9 would mean the drift barely moved.
    corr = []
    for u in range(50):
        el = w.eligible(u, t0)
        a, b = w.true_rates(u, el, switch - 1)[0], w.true_rates(u, el, switch)[0]
        corr.append(np.corrcoef(np.log(a / (1 - a)), np.log(b / (1 - b)))[0, 1])
    assert np.mean(corr) < 0.9
    # Drifted tastes are recalibrated: the overall click rate stays at its target.
    assert w.diagnostics(t=switch)["uniform_ctr"] == pytest.approx(0.04, rel=0.1)
    assert w.drift_weight(switch - 1) == 0.0 and w.drift_weight(switch) == 1.0


def test_gradual_drift_blends_logits_linearly() -> None:
    drift = {"kind": "gradual", "at_days": 2.0, "duration_days": 4.0, "strength": 1.0}
    cfg = replace(SMALL, drift=DriftConfig(**drift))
    w = World.generate(cfg, seed=1)
    idx = np.arange(w.n_bundles)
    t_start, t_mid, t_end = (cfg.start_time + d * DAY for d in (2.0, 4.0, 6.0))
    assert w.drift_weight(t_mid) == pytest.approx(0.5)

    def logit(t: float) -> np.ndarray:
        p = w.true_rates(7, idx, t)[0]
        return np.log(p / (1 - p))

    np.testing.assert_allclose(logit(t_mid), 0.5 * (logit(t_start) + logit(t_end)), atol=1e-9)
    assert not np.allclose(logit(t_start), logit(t_end))


# -- arrivals -------------------------------------------------------------------------------------


def _local_hours(w: World, times: np.ndarray) -> np.ndarray:
    return (times / 3600 + w.config.utc_offset_hours) % 24


def test_arrivals_follow_the_daily_pattern() -> None:
    w = World.generate(SMALL, seed=1)
    times, who = w.arrivals(20000, np.random.default_rng(0))
    assert times.shape == who.shape == (20000,)
    assert (np.diff(times) >= 0).all() and times[0] > w.config.start_time
    assert ((who >= 0) & (who < w.n_users)).all()
    # 20000 arrivals at 20000 per day: about one day.
    assert 0.8 * DAY < times[-1] - times[0] < 1.2 * DAY
    hours = _local_hours(w, times)
    peak = np.mean(np.abs(hours - 20.0) < 2)
    trough = np.mean(np.abs(hours - 8.0) < 2)
    # With amplitude 0.6 the peak-hour intensity is (1+0.6*~0.9)/(1-0.6*~0.9) ~ 3.3x the trough's.
    assert peak > 2.5 * trough
    flat = World.generate(replace(SMALL, daily_amplitude=0.0), 1)
    hours = _local_hours(flat, flat.arrivals(20000, np.random.default_rng(0))[0])
    peak, trough = np.mean(np.abs(hours - 20.0) < 2), np.mean(np.abs(hours - 8.0) < 2)
    assert 0.8 < peak / trough < 1.25  # flat: equal up to ~4 standard errors


def test_engaged_users_arrive_more_often() -> None:
    w = World.generate(SMALL, seed=1)
    _, who = w.arrivals(30000, np.random.default_rng(1))
    visits = np.bincount(who, minlength=w.n_users)
    # Visit weight is exp(0.5 * engagement): correlation of counts with engagement is strong.
    assert np.corrcoef(visits, w.truth["engagement"])[0, 1] > 0.5


def test_stream_yields_time_and_user_pairs() -> None:
    w = World.generate(SMALL, seed=1)
    a = list(w.stream(100, seed=4))
    assert a == list(w.stream(100, seed=4))
    assert len(a) == 100 and all(isinstance(t, float) and isinstance(u, int) for t, u in a)
    times, who = w.arrivals(100, np.random.default_rng(4))
    assert a == list(zip(times.tolist(), who.tolist(), strict=True))
    with pytest.raises(ValidationError, match="users"):
        w.arrivals(5, np.random.default_rng(0), users=np.array([w.n_users]))


# -- catalog changes ------------------------------------------------------------------------------


def test_add_deals_keeps_existing_bundles_and_follows_the_model() -> None:
    w = World.generate(SMALL, seed=6)
    old_ids = list(w.bundles["bundle_id"])
    t0 = w.config.start_time
    old_idx = np.arange(w.n_bundles)
    before = w.true_rates(9, old_idx, t0)
    t_new = t0 + 5 * DAY
    added = w.add_deals(3, np.random.default_rng(2), t=t_new)
    assert list(added.deals["deal_id"]) == ["D0012", "D0013", "D0014"]
    assert (added.deals["valid_from"] == t_new).all()
    assert len(added.bundles) == 3 * len(w.courses) and added.courses.empty
    np.testing.assert_array_equal(added.bundle_index, np.arange(len(old_ids), w.n_bundles))
    assert list(w.bundles["bundle_id"][: len(old_ids)]) == old_ids
    for x, y in zip(before, w.true_rates(9, old_idx, t0), strict=True):
        np.testing.assert_array_equal(x, y)
    pc, _, v = w.true_rates(9, added.bundle_index, t_new)
    assert ((pc > 0) & (pc < 1) & (v > 0)).all()
    # New deals become eligible only from their start.
    new_rows = set(added.bundle_index)
    u = next(u for u in range(w.n_users) if set(w.eligible(u, t_new)) & new_rows)
    assert not set(w.eligible(u, t_new - 1)) & new_rows
    np.testing.assert_array_equal(
        w.bundle_indices(list(added.bundles["bundle_id"])), added.bundle_index
    )


def test_add_courses_pairs_with_deals() -> None:
    w = World.generate(SMALL, seed=6)
    n_before = w.n_bundles
    added = w.add_courses(2, np.random.default_rng(0))
    assert list(added.courses["course_id"]) == ["C0006", "C0007"]
    assert len(added.bundles) == 2 * len(w.deals) and w.n_bundles == n_before + 2 * len(w.deals)
    sampled = World.generate(replace(SMALL, bundles=36), seed=6)
    # 36 bundles over 12 deals: 3 courses per new deal; over 6 courses: 6 deals per new course.
    assert len(sampled.add_deals(2, np.random.default_rng(0)).bundles) == 6
    assert len(sampled.add_courses(1, np.random.default_rng(0)).bundles) == 6


def test_bundle_indices_maps_ids(world: World) -> None:
    ids = list(world.bundles["bundle_id"].iloc[[7, 3]])
    np.testing.assert_array_equal(world.bundle_indices(ids), [7, 3])
    with pytest.raises(NotFoundError, match="bundle_id"):
        world.bundle_indices(["nope"])


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 0}, "n_users must be >= 1, got 0"),
        ({"n_users": 2.5}, "n_users must be an integer, got 2.5"),
        ({"p_both": 1.5}, "p_both must be in [0.0, 1.0], got 1.5"),
        (
            {"p_both": 0.6, "p_knowledge_only": 0.3, "p_groupbuy_only": 0.3},
            "p_both + p_knowledge_only + p_groupbuy_only must be <= 1, got 1.2",
        ),
        ({"n_cities": 9}, "n_cities must be in [1, 8], got 9"),
        ({"bundles": 10_000}, "bundles must be in [1, 800], got 10000"),
        ({"bundles": "some"}, "bundles must be 'all', 'grid' or a number of pairs, got 'some'"),
        ({"base_ctr": 0.0}, "base_ctr must be in (0.0, 0.5], got 0.0"),
        ({"order_rate": 1.0}, "order_rate must be in (0.0, 1.0), got 1.0"),
        ({"noise_scale": -1.0}, "noise_scale must be >= 0, got -1.0"),
        ({"deal_max_days": 10.0}, "deal_max_days must be >= deal_min_days=30.0, got 10.0"),
        ({"start_time": float("nan")}, "start_time must be a finite number, got nan"),
        ({"daily_amplitude": 1.0}, "daily_amplitude must be in [0.0, 1.0), got 1.0"),
    ],
)
def test_config_errors_name_field_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorldConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert info.value.field == message.split(" must")[0]


def test_drift_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"drift\.kind must be 'none', 'abrupt' or 'gradual'"):
        DriftConfig(kind="sudden")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"drift.strength must be in \[0.0, 1.0\], got 2.0"):
        DriftConfig(strength=2.0)
    with pytest.raises(ConfigError, match=r"drift\.duration_days must be > 0"):
        DriftConfig(duration_days=0.0)


def test_config_round_trips_through_json() -> None:
    cfg = WorldConfig(n_users=10, bundles=5, drift=DriftConfig(kind="gradual", strength=0.5))
    again = WorldConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert WorldConfig.from_dict({}) == WorldConfig()
    with pytest.raises(ConfigError, match="n_user is not a world setting"):
        WorldConfig.from_dict({"n_user": 5})
    with pytest.raises(ConfigError, match=r"drift\.speed is not a drift setting"):
        WorldConfig.from_dict({"drift": {"speed": 1}})
    assert WorldConfig().p_new == pytest.approx(0.15)
