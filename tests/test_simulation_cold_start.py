"""Cold start and drift: a wave of new users, bundles added mid-run, preference drift. The
outputs are present and sensible (shapes, bounds, orderings the world guarantees)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import small_scenario

from bandit_engine.simulation.driver import simulate
from bandit_engine.simulation.scenario import Scenario
from bandit_engine.simulation.streams import seed_streams
from bandit_engine.simulation.summary import summarize
from bandit_engine.simulation.world import World

WORLD = {"n_users": 600, "n_cities": 2, "n_deals": 6, "n_courses": 3, "arrivals_per_day": 20000.0}


def scenario(**overrides: Any) -> Scenario:
    return small_scenario("cold", {"rounds": 3000, "seeds": 2, "seed": 7}, WORLD, **overrides)


# -- (a) new users ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wave() -> tuple[Scenario, Any, dict[str, Any]]:
    sc = scenario(new_users={"at": 0.4, "users": 80, "share": 0.4, "first_k": 4})
    res = simulate(sc)
    return sc, res, summarize(res)


def test_wave_members_arrive_only_after_the_wave_starts(wave: Any) -> None:
    sc, res, _ = wave
    start = int(0.4 * sc.run.rounds)
    for trace in res.seeds:
        members = trace.wave_rank >= 0
        assert not members[:start].any()
        share = members[start:].mean()
        assert 0.3 < share < 0.5  # Bernoulli(0.4) over 1800 rounds: sd ~1.2%
        # every member's ranks count 0, 1, 2, ... in arrival order
        users = trace.users[members]
        ranks = trace.wave_rank[members]
        for u in np.unique(users)[:10]:
            np.testing.assert_array_equal(ranks[users == u], np.arange((users == u).sum()))


def test_wave_members_have_no_profile_anywhere(wave: Any) -> None:
    sc, res, _ = wave
    trace = res.seeds[0]
    world = World.generate(sc.world, seed=seed_streams(trace.seed).world_seed)
    first_new = world.n_users
    members = np.unique(trace.users[trace.wave_rank >= 0])
    assert members.min() >= first_new  # they were added to the world, not drawn from it
    assert set(world.knowledge["user_id"]).isdisjoint({f"U{u:06d}" for u in members})


def test_new_user_summary_is_sensible(wave: Any) -> None:
    _, _, summary = wave
    nu = summary["cold_start"]["new_users"]
    assert nu["first_k"] == 4
    assert nu["decisions_scored"] > 100
    oracle = nu["oracle_first_k_reward"]
    for label, rec in nu["policies"].items():
        assert len(rec["by_decision"]) == 4
        assert 0 < rec["first_k_reward"] <= oracle
        assert 0 < rec["share_of_oracle"] <= 1
        assert rec["established_users_reward"] > 0, label
    assert set(nu["policies"]["linucb"]["vs"]) == {"uniform", "popularity"}


def test_new_user_curve_reports_every_decision_index_with_intervals(wave: Any) -> None:
    _, res, summary = wave
    curve = summary["cold_start"]["new_users"]["curve"]
    assert curve["decisions"] == 20
    assert set(curve["policies"]) == {a.label for a in res.arms}  # policies and controls
    rank = np.concatenate([s.wave_rank for s in res.seeds])
    for label, rec in curve["policies"].items():
        assert [p["decision"] for p in rec["curve"]] == list(range(1, 21))
        for point in rec["curve"]:
            assert point["n"] == int((rank == point["decision"] - 1).sum())
            if point["n"] >= 2:
                assert point["ci_low"] <= point["share"] <= point["ci_high"], label
        windows = rec["windows"]
        assert set(windows) == {"1-5", "6-10", "11-20"}
        assert windows["1-5"]["n"] == int(((rank >= 0) & (rank < 5)).sum())
        growth = rec["growth_11_20_over_1_5"]
        if windows["11-20"]["share"] is not None:
            ratio = windows["11-20"]["share"] / windows["1-5"]["share"]
            assert growth == pytest.approx(ratio, rel=1e-4)  # the summary rounds to 6 digits
        others = {a.label for a in res.arms if a.role == "control"} - {label}
        assert set(rec["vs_from_6"]) == others


# -- (b) new bundles ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles() -> tuple[Any, dict[str, Any]]:
    sc = scenario(new_bundles={"at": 0.5, "deals": 2, "courses": 1}, report={"block": 150})
    res = simulate(sc)
    return res, summarize(res)


def test_new_bundles_join_every_engine_mid_run(bundles: Any) -> None:
    res, _ = bundles
    for trace in res.seeds:
        assert trace.added_at == 1500
        assert len(trace.new_bundles) > 0
        assert not np.isfinite(trace.best_new[:1500]).any()
        assert np.isfinite(trace.best_new[1500:]).any()
        for tr in trace.arms.values():
            assert not tr.chose_new[:1500].any()
        # the uniform control offers what the catalog offers: it picks new bundles too
        assert trace.arms["uniform"].chose_new[1500:].any()


def test_new_bundle_summary_is_sensible(bundles: Any) -> None:
    _, summary = bundles
    nb = summary["cold_start"]["new_bundles"]
    assert nb["added_at_round"] == 1500
    assert 0.0 <= nb["fair_share"] <= nb["offered_share"] <= 1.0
    for rec in nb["policies"].values():
        assert 0.0 <= rec["share"] <= 1.0
        assert rec["exploration_cost"] >= 0 and rec["missed_gain"] >= 0
        assert rec["regret_from_new_bundles"] == pytest.approx(
            rec["exploration_cost"] + rec["missed_gain"], rel=1e-5
        )
        assert rec["regret_from_new_bundles"] <= rec["regret_after_addition"] + 1e-6
        assert len(rec["share_by_block"]) == 1500 // 150
    # a fresh LinUCB arm starts at the prior's optimistic bound: it tries new bundles at once
    assert nb["policies"]["linucb"]["share"] > 0.05


def test_early_share_is_measured_over_the_first_rounds_after_arrival(bundles: Any) -> None:
    res, summary = bundles
    nb = summary["cold_start"]["new_bundles"]
    k = nb["early_rounds"]
    fair = [
        float((s.best_new[1500 : 1500 + k] > s.best_old[1500 : 1500 + k]).mean()) for s in res.seeds
    ]
    assert nb["early_fair_share"] == pytest.approx(np.mean(fair), rel=1e-5)
    for label, rec in nb["policies"].items():
        chose = [s.arms[label].chose_new[1500 : 1500 + k].mean() for s in res.seeds]
        assert rec["early_share"] == pytest.approx(np.mean(chose), rel=1e-5)


# -- (c) drift ----------------------------------------------------------------------------
def test_drift_is_summarised_with_and_without_forgetting() -> None:
    sc = scenario(
        world={**WORLD, "drift": {"kind": "abrupt", "at_days": 0.15, "strength": 1.0}},
        run={"rounds": 6000, "seeds": 1, "seed": 3},
        policies=[
            {"name": "linucb", "alpha": 0.1},
            {"name": "linucb", "alpha": 0.1, "discount": 0.98, "label": "forgetful"},
        ],
        controls=[{"name": "uniform"}],
        report={"block": 300},
    )
    res = simulate(sc)
    trace = res.seeds[0]
    # the first round at or after the drift's start time
    assert trace.drift_at is not None
    t_drift = sc.world.start_time + 0.15 * 86400.0
    assert trace.times[trace.drift_at - 1] < t_drift <= trace.times[trace.drift_at]
    dr = summarize(res)["drift"]
    assert dr["drift_at_round"] == trace.drift_at
    assert set(dr["policies"]) == {"linucb", "forgetful", "uniform"}
    for rec in dr["policies"].values():
        assert 0 < rec["pre_drift_share_of_oracle"] <= 1
        assert rec["lowest_share_after_drift"] <= rec["final_share_of_oracle"]
        assert len(rec["share_of_oracle_by_block"]) == (6000 - trace.drift_at) // 300
