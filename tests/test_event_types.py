"""Platform-aware event types in the RewardSpec (issue 13, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.engine_factory import small_engine

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.rewards import EventKind, RewardSpec
from bandit_engine.service import LoggedEngine
from bandit_engine.store import EventLog

KEY = b"event-types-hmac-key-0123456789x"
T0 = 1_700_000_000.0
SPEC = RewardSpec(
    click=1.0,
    order=2.0,
    window=30.0,
    events={
        "deal_order": EventKind("groupbuy", weight=2.0, value_weight=0.01),
        "course_purchase": {"platform": "knowledge", "weight": 3.0},
        "course_play": EventKind("knowledge", weight=0.2, conversion=False),
    },
)


def test_declared_types_have_platforms_weights_and_conversions() -> None:
    assert SPEC.event_types == ("click", "order", "deal_order", "course_purchase", "course_play")
    assert SPEC.platform_of("deal_order") == "groupbuy"
    assert SPEC.platform_of("order") == "bundle"
    assert SPEC.platform_of("click") is None
    assert SPEC.is_conversion("course_purchase") and not SPEC.is_conversion("course_play")
    assert SPEC.event_reward("deal_order", 100.0) == pytest.approx(3.0)
    assert SPEC.event_reward("course_play") == pytest.approx(0.2)


def test_an_unknown_type_names_itself_and_the_declared_ones() -> None:
    with pytest.raises(ValidationError) as err:
        SPEC.check_type("coupon_use")
    assert "'coupon_use'" in str(err.value)
    assert "deal_order" in str(err.value) and "course_play" in str(err.value)
    with pytest.raises(ValidationError, match="must be one of the declared event types"):
        RewardSpec().event_reward("deal_order")


@pytest.mark.parametrize(
    ("events", "match"),
    [
        ({"click": EventKind("groupbuy")}, "must not redeclare click or order"),
        ({"Deal Order": EventKind("groupbuy")}, "lower-case"),
        ({"x": {"weight": 1.0}}, "must name its 'platform'"),
        ({"x": {"platform": "mars"}}, "events.x.platform must be one of"),
        ({"x": {"platform": "groupbuy", "wieght": 1}}, r"events.x.wieght is not one of"),
        (
            {"x": {"platform": "groupbuy", "weight": float("inf")}},
            "events.x.weight must be a finite",
        ),
    ],
)
def test_bad_declarations_are_config_errors(events: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RewardSpec(events=events)  # type: ignore[arg-type]


def test_old_specs_and_files_are_unchanged() -> None:
    old = RewardSpec(click=1.0, order=2.0)
    assert "events" not in old.to_dict()  # a file written without events is the file it was
    assert RewardSpec.from_dict(old.to_dict()) == old
    again = RewardSpec.from_dict(SPEC.to_dict())
    assert again == SPEC
    assert hash(again) == hash(SPEC)


def test_the_engine_learns_declared_types_and_refuses_others(tmp_path: Path) -> None:
    engine = small_engine()
    engine.rewards = SPEC
    engine.attribution.spec = SPEC
    d = engine.decide("u1", now=T0)
    assert engine.report(d.decision_id, "deal_order", value=100.0, at=T0 + 1) == "accepted"
    assert engine.report(d.decision_id, "course_play", at=T0 + 2) == "accepted"
    with pytest.raises(ValidationError, match="type must be one of the declared"):
        engine.report(d.decision_id, "refund", at=T0 + 3)
    learned = engine.flush(T0 + 100)
    assert [r.reward for r in learned] == [pytest.approx(3.0 + 0.2)]
    engine.save(tmp_path / "m.bandit")
    assert type(engine).load(tmp_path / "m.bandit").rewards == SPEC


def test_the_log_keeps_declared_types_and_their_platforms(tmp_path: Path) -> None:
    engine = small_engine()
    engine.rewards = SPEC
    engine.attribution.spec = SPEC
    with EventLog(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        svc = LoggedEngine(engine, log)
        d = svc.decide("u2", now=T0)
        svc.report(d.decision_id, "course_purchase", at=T0 + 1)
        assert [e["type"] for e in log.decision(d.decision_id)["events"]] == ["course_purchase"]
        import json

        types = json.loads(log.get_meta("event_types") or "{}")
        assert types["course_purchase"] == {"platform": "knowledge", "conversion": True}
        assert types["order"] == {"platform": "bundle", "conversion": True}


def test_an_event_of_a_platform_needs_that_part() -> None:
    # every catalog bundle has both parts today; the rule guards bundles without one
    SPEC.check_part("deal_order", "d1", "c1")
    with pytest.raises(
        ValidationError, match="groupbuy event, but the decision's bundle has no deal"
    ):
        SPEC.check_part("deal_order", None, "c1")
    with pytest.raises(ValidationError, match=r"knowledge event, .* has no course"):
        SPEC.check_part("course_purchase", "d1", "")
    with pytest.raises(ValidationError, match="bundle event"):
        SPEC.check_part("order", "d1", None)
    SPEC.check_part("click", None, None)  # a click belongs to no platform
