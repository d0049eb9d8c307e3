"""Reward spec, attribution windows, late and duplicate events — all on an explicit clock."""

from __future__ import annotations

import math

import pytest

from bandit_engine.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from bandit_engine.records import OutcomeEvent
from bandit_engine.rewards import Attribution, RewardSpec, reward_to_cost


def test_reward_spec_weights_value_and_cap() -> None:
    spec = RewardSpec(click=1.0, order=5.0, value_weight=0.01, cap=8.0)
    events = [
        OutcomeEvent("d", "click", 0.0, event_id="e1"),
        OutcomeEvent("d", "order", 1.0, value=150.0, event_id="e2"),
    ]
    assert spec.reward(events) == pytest.approx(1.0 + 5.0 + 1.5)
    events.append(OutcomeEvent("d", "click", 2.0, event_id="e3"))
    events.append(OutcomeEvent("d", "click", 2.0, event_id="e3"))  # duplicate id counts once
    assert spec.reward(events) == 8.0  # 1 + 6.5 + 1 = 8.5 capped at 8


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"window": -1.0}, "window", "-1.0"),
        ({"cap": 0.0}, "cap", "0.0"),
        ({"click": math.nan}, "click", "nan"),
        ({"order": "5"}, "order", "'5'"),
    ],
)
def test_reward_spec_validation_names_field_and_value(
    kwargs: dict[str, object], field: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as info:
        RewardSpec(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value) and shown in str(info.value)


def test_reward_spec_round_trip_and_unknown_key() -> None:
    spec = RewardSpec(click=2.0, order=3.0, cap=None, window=60.0)
    assert RewardSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match=r"rewards\.clicks"):
        RewardSpec.from_dict({"clicks": 1.0})


def test_reward_to_cost_flips_sign_and_scales() -> None:
    assert reward_to_cost(1.0) == -1.0
    assert reward_to_cost(0.0) == 0.0
    assert reward_to_cost(6.0, scale=2.0) == -3.0
    # more reward must always mean less cost
    assert reward_to_cost(2.0) < reward_to_cost(1.0)
    with pytest.raises(ValidationError, match="reward"):
        reward_to_cost(math.inf)
    with pytest.raises(ConfigError, match="scale"):
        reward_to_cost(1.0, scale=0.0)


def test_window_learns_once_with_total_reward() -> None:
    att: Attribution[str] = Attribution(RewardSpec(click=1.0, order=4.0, window=10.0))
    att.add_decision("d1", 100.0, "payload-1")
    assert att.add_event("d1", "click", 101.0) == "accepted"
    assert att.add_event("d1", "order", 110.0, value=30.0) == "accepted"  # deadline is inclusive
    assert att.close_due(110.0) == []  # window [100, 110] still open at 110
    closed = att.close_due(110.5)
    assert len(closed) == 1
    c = closed[0]
    assert (c.decision_id, c.payload, c.reward, c.status, c.n_events) == (
        "d1",
        "payload-1",
        5.0,
        "learned",
        2,
    )
    assert att.close_due(1e9) == []  # never learned twice
    assert att.status("d1") == "learned"


def test_default_reward_when_window_closes_empty() -> None:
    att: Attribution[None] = Attribution(RewardSpec(default_reward=-0.1, window=5.0))
    att.add_decision("d1", 0.0, None)
    att.add_decision("d2", 1.0, None)
    closed = att.close_due(5.5)
    assert [(c.decision_id, c.reward, c.status) for c in closed] == [("d1", -0.1, "default")]
    assert att.status("d2") == "pending"


def test_late_and_duplicate_events_are_counted_not_learned() -> None:
    att: Attribution[None] = Attribution(RewardSpec(window=5.0))
    att.add_decision("d1", 0.0, None)
    assert att.add_event("d1", "click", 1.0, event_id="e1") == "accepted"
    assert att.add_event("d1", "click", 1.0, event_id="e1") == "duplicate"
    # arrives before the window is closed but happened after it: late
    assert att.add_event("d1", "click", 6.0, event_id="e2") == "late"
    closed = att.close_due(7.0)
    assert closed[0].reward == 1.0
    assert att.add_event("d1", "order", 8.0, event_id="e3") == "late"
    assert att.add_event("d1", "order", 9.0, event_id="e3") == "duplicate"
    assert att.add_event("d1", "click", 9.0, event_id="e1") == "duplicate"
    assert (att.n_late, att.n_duplicates) == (2, 3)


def test_bad_events_raise_and_lose_nothing() -> None:
    att: Attribution[None] = Attribution(RewardSpec(window=5.0))
    att.add_decision("d1", 10.0, None)
    with pytest.raises(NotFoundError, match="nope"):
        att.add_event("nope", "click", 11.0)
    with pytest.raises(ValidationError, match="type"):
        att.add_event("d1", "view", 11.0)
    with pytest.raises(ValidationError, match="timestamp"):
        att.add_event("d1", "click", 9.0, event_id="e1")
    # the rejected event id was not consumed: the same id is accepted once corrected
    assert att.add_event("d1", "click", 11.0, event_id="e1") == "accepted"
    with pytest.raises(ConflictError, match="d1"):
        att.add_decision("d1", 12.0, None)
    assert att.close_due(100.0)[0].reward == 1.0


def test_close_all_and_restore_pending() -> None:
    att: Attribution[str] = Attribution(RewardSpec(window=100.0))
    att.add_decision("a", 0.0, "A")
    att.add_decision("b", 1.0, "B")
    att.add_event("a", "click", 2.0, event_id="x")
    saved = att.pending_items()
    other: Attribution[str] = Attribution(RewardSpec(window=100.0))
    for did, ts, payload, rsum, n_ev, ids in saved:
        other.restore_pending(did, ts, payload, rsum, n_ev, ids)
    assert other.add_event("a", "click", 3.0, event_id="x") == "duplicate"
    result = {c.decision_id: (c.reward, c.status) for c in other.close_all(5.0)}
    assert result == {"a": (1.0, "learned"), "b": (0.0, "default")}


def test_many_event_ids_on_one_decision_stay_exactly_once() -> None:
    # past 32 ids a decision's ids move from a tuple to a set: no id may be lost on the way,
    # pending or after the window closed
    att: Attribution[None] = Attribution(RewardSpec(click=1.0, window=100.0))
    att.add_decision("d1", 0.0, None)
    for i in range(40):
        assert att.add_event("d1", "click", 1.0, event_id=f"e{i}") == "accepted"
    assert [att.add_event("d1", "click", 2.0, event_id=f"e{i}") for i in (0, 31, 32, 39)] == [
        "duplicate"
    ] * 4
    assert att.pending_items()[0][5] == sorted(f"e{i}" for i in range(40))
    assert att.close_due(101.0)[0].reward == 40.0
    assert att.add_event("d1", "click", 102.0, event_id="e35") == "duplicate"
    assert att.add_event("d1", "click", 102.0, event_id="e40") == "late"
    assert (att.n_late, att.n_duplicates) == (1, 5)


def test_pending_decisions_are_out_of_the_collectors_view() -> None:
    # the server's tail (benchmarks/README.md, issue 12): full collections walked every pending
    # decision. A record with an untracked payload must be untracked after one collection.
    import gc

    att: Attribution[tuple[str, float]] = Attribution(RewardSpec(window=100.0))
    for i in range(100):
        att.add_decision(f"d{i}", float(i), (f"bundle{i}", 0.5))
        att.add_event(f"d{i}", "click", float(i), event_id=f"e{i}")
    # the collector may examine a record before its payload: the next collection untracks it
    gc.collect()
    gc.collect()
    assert not any(gc.is_tracked(record) for record in att._pending.values())
