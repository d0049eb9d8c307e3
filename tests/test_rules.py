"""Business rules on the engine (in-process counters): predicates, caps, budgets, exclusions,
fallbacks, propensities over the eligible set, save / load, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bandit_engine import Engine
from bandit_engine.catalog import DEFAULT_COURSE_FEATURES, Catalog
from bandit_engine.demo import demo_engine, demo_tables
from bandit_engine.errors import ConfigError, NoOfferError, ValidationError
from bandit_engine.features import Boolean
from bandit_engine.policies import make_policy
from bandit_engine.rules import (
    Budget,
    EligibilityRule,
    Exclusions,
    Fallback,
    FrequencyCap,
    Rules,
    parse_predicate,
)
from bandit_engine.simulation.engines import DEMO_SCHEMA

T0 = 1_800_000_000.0  # a UTC midnight: 1_800_000_000 % 86_400 == 28_800, so shifted below
DAY0 = T0 - (T0 % 86_400.0)
USER = "U000001"  # known on both platforms, city beijing, avg_ticket 96.9


def _engine(policy: str = "uniform") -> Engine:
    return demo_engine(seed=0, policy=policy, start_time=DAY0, clock=lambda: DAY0)


# -- the predicate language --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "column", "op", "value", "other", "factor"),
    [
        ("deal.price <= 100", "deal.price", "<=", 100.0, None, 1.0),
        ("knowledge.membership == 'member'", "knowledge.membership", "==", "member", None, 1.0),
        ('course.topic != "cooking"', "course.topic", "!=", "cooking", None, 1.0),
        (
            "deal.price <= 1.5 * groupbuy.avg_ticket",
            "deal.price",
            "<=",
            None,
            "groupbuy.avg_ticket",
            1.5,
        ),
        ("course.members_only == true", "course.members_only", "==", True, None, 1.0),
        (
            "deal.cuisine in ['hotpot', 'sichuan']",
            "deal.cuisine",
            "in",
            ("hotpot", "sichuan"),
            None,
            1.0,
        ),
        ("deal.city not in ['xian']", "deal.city", "not in", ("xian",), None, 1.0),
    ],
)
def test_predicates_parse_into_their_parts(
    text: str, column: str, op: str, value: object, other: str | None, factor: float
) -> None:
    p = parse_predicate(text)
    assert (p.column, p.op, p.value, p.other, p.factor) == (column, op, value, other, factor)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",  # never evaluated: not a comparison
        "deal.price <=",
        "deal.price < 'cheap'",  # ordering needs a number
        "deal.price == 2 * groupbuy.avg_ticket",  # scaled columns only with an ordering
        "deal.price <= 100 or 1",
        "price <= 100",  # a column is <side>.<name>
        "deal.cuisine in []",
        "",
    ],
)
def test_malformed_predicates_are_config_errors_naming_the_field(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        EligibilityRule("r1", require=text)
    assert err.value.field == "eligibility[r1].require"
    assert "got" in err.value.message


def test_missing_values_are_undecided_and_orderings_compare_numbers_only() -> None:
    p = parse_predicate("deal.price <= 1.5 * groupbuy.avg_ticket")
    assert p.compare(100.0, 150.0) is True
    assert p.compare(200.0, 150.0) is False
    assert p.compare(100.0, None) is None
    assert p.compare(math.nan, 1.0) is None
    assert p.compare("100", 150.0) is None


# -- construction errors ------------------------------------------------------------------------
def test_a_rule_naming_an_unknown_column_names_the_rule_the_column_and_the_known_ones() -> None:
    engine = _engine()
    rules = Rules(eligibility=(EligibilityRule("members", "knowledge.tier == 'gold'"),))
    with pytest.raises(ConfigError) as err:
        engine.use_rules(rules)
    msg = err.value.message
    assert "'members'" in msg and "'knowledge.tier'" in msg and "knowledge.membership" in msg
    assert "deal.price" in msg  # bundle columns are listed too
    assert engine.rules is None  # nothing changed


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_caps_and_budgets_of_zero_or_negative_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        FrequencyCap("c", "bundle", bad, 7)  # type: ignore[arg-type]
    assert err.value.field == "caps[c].max_shows" and repr(bad) in err.value.message
    with pytest.raises(ConfigError) as err:
        Budget("b", "deal", bad)  # type: ignore[arg-type]
    assert err.value.field == "budgets[b].max_per_day"
    with pytest.raises(ConfigError):
        FrequencyCap("c", "bundle", 3, 0)


def test_a_fallback_bundle_not_in_the_catalog_is_refused_at_construction() -> None:
    engine = _engine()
    with pytest.raises(ConfigError) as err:
        engine.use_rules(Rules(fallback=Fallback("bundle", bundle_id="NOPE+C0000")))
    assert err.value.field == "fallback.bundle_id"


def test_duplicate_names_and_unknown_toml_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"caps\.name must be unique"):
        Rules(caps=(FrequencyCap("c", "bundle", 1, 1), FrequencyCap("c", "deal", 1, 1)))
    with pytest.raises(ConfigError, match="unknown keys"):
        Rules.from_toml("[[caps]]\nname='c'\nper='bundle'\nmax_shows=1\nwindow_days=1\nmax=3\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        Rules.from_toml("[[caps]\n")


# -- eligibility predicates ---------------------------------------------------------------------
def _members_engine() -> Engine:
    t = demo_tables(seed=0)
    courses = t["courses"].copy()
    courses["members_only"] = [i % 2 == 0 for i in range(len(courses))]
    catalog = Catalog(
        t["deals"],
        courses,
        course_features=(*DEFAULT_COURSE_FEATURES, Boolean("members_only")),
    )
    return Engine.build(
        schema=DEMO_SCHEMA,
        profiles={"knowledge": t["knowledge"], "groupbuy": t["groupbuy"]},
        catalog=catalog,
        policy=make_policy("uniform", seed=1),
        clock=lambda: DAY0,
    )


def test_members_only_courses_go_to_members_only() -> None:
    engine = _members_engine()
    engine.use_rules(
        Rules(
            eligibility=(
                EligibilityRule(
                    "members_only",
                    when="course.members_only == true",
                    require="knowledge.membership == 'member'",
                ),
            )
        )
    )
    members_only = set(engine.catalog.courses().query("members_only")["course_id"])
    assert members_only
    member = {"knowledge": {"membership": "member"}, "groupbuy": {"city": "beijing"}}
    basic = {"knowledge": {"membership": "basic"}, "groupbuy": {"city": "beijing"}}
    d_member = engine.decide(profile=member, now=DAY0 + 1)
    d_basic = engine.decide(profile=basic, now=DAY0 + 2)
    member_courses = {engine.catalog.parts(b)[1] for b in d_member.candidates}
    basic_courses = {engine.catalog.parts(b)[1] for b in d_basic.candidates}
    assert members_only <= member_courses
    assert not members_only & basic_courses
    assert basic_courses  # the other courses are still offered
    # unknown membership is undecided: excluded by default (if_missing="exclude")
    d_anon = engine.decide(profile={"groupbuy": {"city": "beijing"}}, now=DAY0 + 3)
    assert not members_only & {engine.catalog.parts(b)[1] for b in d_anon.candidates}


def test_price_within_a_multiple_of_the_users_average_ticket() -> None:
    engine = _engine()
    rule = EligibilityRule("price", "deal.price <= 1.2 * groupbuy.avg_ticket")
    engine.use_rules(Rules(eligibility=(rule,)))
    deals = engine.catalog.deals().set_index("deal_id")
    # hangzhou's deals cost 49, 60, 96, 97, 116 and 128
    for ticket, n_deals in ((50.0, 2), (90.0, 4), (200.0, 6)):
        prof = {"groupbuy": {"city": "hangzhou", "avg_ticket": ticket}}
        d = engine.decide(profile=prof, now=DAY0 + ticket)
        offered = {engine.catalog.parts(b)[0] for b in d.candidates}
        assert len(offered) == n_deals
        assert all(deals.loc[deal, "price"] <= 1.2 * ticket for deal in offered)
    with pytest.raises(ValidationError, match="rule 'price'"):  # nothing cheap enough
        engine.decide(profile={"groupbuy": {"city": "hangzhou", "avg_ticket": 20.0}}, now=DAY0)


def test_propensity_is_over_the_set_that_was_actually_eligible() -> None:
    engine = _engine("uniform")
    before = engine.decide(USER, now=DAY0)
    # the demo user's city (beijing) has deals at 122 and 140
    engine.use_rules(Rules(eligibility=(EligibilityRule("cheap", "deal.price <= 130"),)))
    after = engine.decide(USER, now=DAY0 + 1)
    assert 0 < len(after.candidates) < len(before.candidates)
    assert after.propensity == pytest.approx(1.0 / len(after.candidates))
    assert after.probabilities is not None and len(after.probabilities) == len(after.candidates)
    deals = engine.catalog.deals().set_index("deal_id")
    assert all(deals.loc[engine.catalog.parts(b)[0], "price"] <= 130 for b in after.candidates)


@pytest.mark.parametrize("policy", ["linucb", "lin_ts", "epsilon_greedy"])
def test_a_ruled_decision_is_the_decision_over_the_eligible_sub_list(policy: str) -> None:
    # The policy gets the city's whole list and the rules' mask (so it keeps its per-list
    # caches); the goal is that this changes nothing: a twin engine without rules, told the same
    # eligible sub-list as candidates, decides exactly the same (same seed, same draws), with the
    # same propensity, over the same recorded candidates, while both learn the same rewards.
    ruled, twin = _engine(policy), _engine(policy)
    ruled.use_rules(
        Rules(
            eligibility=(EligibilityRule("cheap", "deal.price <= 130"),),
            caps=(FrequencyCap("bundle", "bundle", 2, 7),),
        )
    )
    sizes = set()
    for i in range(18):  # the city's 10 cheap bundles, 2 shows each: the cap shrinks the list
        t = DAY0 + 60.0 * i
        d = ruled.decide(USER, decision_id=f"r{i}", now=t)
        sizes.add(len(d.candidates))
        e = twin.decide(USER, candidates=list(d.candidates), decision_id=f"r{i}", now=t)
        assert (d.bundle_id, d.candidates) == (e.bundle_id, e.candidates)
        assert d.propensity == pytest.approx(e.propensity, rel=1e-9)
        np.testing.assert_allclose(d.scores, e.scores, rtol=1e-9)
        if i % 3 == 0:
            for eng in (ruled, twin):
                eng.report(f"r{i}", "click", at=t + 1.0)
    assert len(sizes) > 1  # the mask did change from decision to decision


# -- caps, budgets, exclusions -------------------------------------------------------------------
def test_frequency_cap_per_bundle_over_a_sliding_window() -> None:
    engine = _engine("linucb")  # greedy: without the cap it would repeat its favourite
    engine.use_rules(
        Rules(caps=(FrequencyCap("weekly", "bundle", 2, 7),), fallback=Fallback("no_offer"))
    )
    shown: dict[str, list[float]] = {}
    refused = 0
    for i in range(60):
        t = DAY0 + i * 3600.0
        try:
            d = engine.decide(USER, now=t)
        except NoOfferError:
            refused += 1
            continue
        shown.setdefault(d.bundle_id, []).append(t)
    # the user's city has 20 bundles: 2 shows each, then nothing until the window moves
    assert len(shown) == 20 and all(len(v) == 2 for v in shown.values())
    assert refused == 20
    # a week later the bundles are back
    d = engine.decide(USER, now=DAY0 + 8 * 86_400)
    assert d.bundle_id in shown


def test_decision_budget_per_deal_is_exact_and_paced_evenly() -> None:
    engine = _engine("uniform")
    deal = "D0001"  # a beijing deal (the demo user's city)
    engine.use_rules(Rules(budgets=(Budget("d1", "deal", 12, pacing="even", ids=(deal,)),)))
    count = 0
    for i in range(2400):
        t = DAY0 + i * 36.0  # a day of decisions, every 36 s
        d = engine.decide(USER, now=t)
        if engine.catalog.parts(d.bundle_id)[0] == deal:
            count += 1
            f = (t - DAY0) / 86_400.0
            assert count <= max(1, math.ceil(12 * f))  # even pacing: never ahead of the day
    assert count == 12  # uniform over ~8 deals x 2,400 decisions spends the whole budget


def test_bought_courses_and_recently_ordered_deals_are_excluded() -> None:
    engine = _engine("uniform")
    engine.use_rules(Rules(exclusions=Exclusions(bought_courses=True, ordered_deals_days=3)))
    d = engine.decide(USER, now=DAY0)
    engine.report(d.decision_id, "order", value=50.0, at=DAY0 + 10)
    deal, course = engine.catalog.parts(d.bundle_id)
    later = engine.decide(USER, now=DAY0 + 86_400)
    assert all(engine.catalog.parts(b)[1] != course for b in later.candidates)
    assert all(engine.catalog.parts(b)[0] != deal for b in later.candidates)
    much_later = engine.decide(USER, now=DAY0 + 4 * 86_400)
    assert any(engine.catalog.parts(b)[0] == deal for b in much_later.candidates)
    assert all(engine.catalog.parts(b)[1] != course for b in much_later.candidates)
    # another user is not affected
    other = engine.decide("U000002", now=DAY0 + 86_400)
    assert any(engine.catalog.parts(b)[1] == course for b in other.candidates)


def test_forgetting_a_user_removes_their_counters() -> None:
    engine = _engine("linucb")
    engine.use_rules(Rules(caps=(FrequencyCap("once", "bundle", 1, 30),)))
    first = engine.decide(USER, now=DAY0)
    assert first.bundle_id not in engine.decide(USER, now=DAY0 + 1).candidates
    assert engine.rules is not None and engine.rules.forget(USER) > 0
    assert first.bundle_id in engine.decide(USER, now=DAY0 + 2).candidates


# -- fallbacks -------------------------------------------------------------------------------------
XIAN = {"groupbuy": {"city": "xian"}}  # a city with no deal: 422 without rules


def test_without_a_fallback_a_city_with_nothing_eligible_is_still_the_validation_error() -> None:
    engine = _engine()
    engine.use_rules(Rules())
    with pytest.raises(ValidationError, match="no bundle is eligible for city 'xian'"):
        engine.decide(profile=XIAN, now=DAY0)


def test_fallback_bundle_serves_the_named_bundle_with_propensity_one() -> None:
    engine = _engine()
    engine.use_rules(Rules(fallback=Fallback("bundle", bundle_id="D0001+C0002")))
    d = engine.decide(profile=XIAN, now=DAY0)
    assert (d.bundle_id, d.propensity, d.mode, d.candidates) == (
        "D0001+C0002",
        1.0,
        "fallback:bundle",
        ("D0001+C0002",),
    )
    assert engine.report(d.decision_id, "click", at=DAY0 + 1) == "accepted"


def test_fallback_policy_chooses_among_bundles_of_any_city_that_pass_the_rules() -> None:
    engine = _engine("linucb")
    rules = Rules(
        eligibility=(EligibilityRule("cheap", "deal.price <= 100"),),
        fallback=Fallback("policy", policy="uniform:seed=3"),
    )
    engine.use_rules(rules)
    d = engine.decide(profile=XIAN, now=DAY0)
    assert d.mode == "fallback:policy"
    assert d.propensity == pytest.approx(1.0 / len(d.candidates))
    cities = {
        engine.catalog.deals().set_index("deal_id").loc[engine.catalog.parts(b)[0], "city"]
        for b in d.candidates
    }
    assert len(cities) > 1
    prices = engine.catalog.deals().set_index("deal_id")["price"]
    assert all(prices[engine.catalog.parts(b)[0]] <= 100 for b in d.candidates)


def test_no_offer_fallback_is_an_explicit_decision_with_a_reason() -> None:
    engine = _engine()
    engine.use_rules(Rules(fallback=Fallback("no_offer")))
    with pytest.raises(NoOfferError) as err:
        engine.decide(profile=XIAN, now=DAY0)
    assert "xian" in err.value.reason
    assert engine.n_decisions == 0  # nothing was recorded


def test_a_budget_exhausted_mid_run_gives_the_fallback_and_nothing_over_budget() -> None:
    engine = _engine("linucb")
    every_deal = tuple(engine.catalog.deals()["deal_id"])
    engine.use_rules(
        Rules(
            budgets=(Budget("all", "deal", 2, ids=every_deal),),
            fallback=Fallback("no_offer"),
        )
    )
    served: dict[str, int] = {}
    no_offer = 0
    for i in range(200):
        try:
            d = engine.decide(USER, now=DAY0 + i)
        except NoOfferError as exc:
            no_offer += 1
            assert "budget 'all'" in exc.reason
            continue
        deal = engine.catalog.parts(d.bundle_id)[0]
        served[deal] = served.get(deal, 0) + 1
    assert served and max(served.values()) == 2  # the budget was reached, never passed
    assert no_offer == 200 - sum(served.values()) > 0


# -- persistence -------------------------------------------------------------------------------------
TOML = """
[[eligibility]]
name = "price"
require = "deal.price <= 1.5 * groupbuy.avg_ticket"
if_missing = "allow"

[[caps]]
name = "weekly"
per = "bundle"
max_shows = 3
window_days = 7

[[budgets]]
name = "daily"
per = "deal"
max_per_day = 500
pacing = "even"

[exclusions]
bought_courses = true
ordered_deals_days = 30

[fallback]
kind = "no_offer"
"""


def test_rules_from_toml_are_saved_with_the_model_and_old_files_still_load(tmp_path: Path) -> None:
    toml = tmp_path / "rules.toml"
    toml.write_text(TOML)
    rules = Rules.from_toml(toml)
    assert rules.caps[0].max_shows == 3 and rules.budgets[0].pacing == "even"
    assert Rules.from_dict(rules.to_dict()) == rules
    engine = _engine("linucb")
    engine.use_rules(rules)
    engine.save(tmp_path / "e.bandit")
    loaded = Engine.load(tmp_path / "e.bandit", clock=lambda: DAY0)
    assert loaded.rules is not None and loaded.rules.rules == rules
    prof = engine.profile_of(USER)  # profiles are not in the file (raw ids never reach disk)
    a = engine.decide(USER, prof, now=DAY0 + 5)
    b = loaded.decide(USER, prof, now=DAY0 + 5)
    assert a.candidates == b.candidates and a.bundle_id == b.bundle_id
    # a file written before rules existed has no "rules" entry
    state = engine.to_state()
    del state["rules"]
    old = Engine.from_state(state)
    assert old.rules is None
    assert old.decide(USER, now=DAY0 + 6).bundle_id


def test_rules_cost_nothing_when_no_rule_applies() -> None:
    """Rules that shrink nothing leave the decision exactly as without them (same draws)."""
    a, b = _engine("lin_ts"), _engine("lin_ts")
    b.use_rules(
        Rules(
            eligibility=(EligibilityRule("any", "deal.price <= 1e9"),),
            caps=(FrequencyCap("big", "bundle", 1000, 1),),
        )
    )
    for i in range(30):
        da, db = a.decide(USER, now=DAY0 + i), b.decide(USER, now=DAY0 + i)
        assert (da.bundle_id, da.candidates) == (db.bundle_id, db.candidates)
        np.testing.assert_allclose(da.propensity, db.propensity)


def test_the_shipped_example_rules_apply_to_the_demo_engine() -> None:
    rules = Rules.from_toml(Path(__file__).resolve().parent.parent / "examples" / "rules.toml")
    engine = _engine("linucb")
    engine.use_rules(rules)
    d = engine.decide(profile=XIAN, now=DAY0)  # the fallback policy, not a 422
    assert d.mode == "fallback:policy"
    assert engine.decide(USER, now=DAY0 + 1).mode is None
