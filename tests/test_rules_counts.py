"""The rules' incremental speed machinery against brute force: the caps' counts kept per user
(:mod:`bandit_engine.rules._window`) equal a recount of the shows under random sequences of
records, reads (times going backwards too), window expiry and ``forget``; an engine whose rule
state recounts decides exactly as one whose state keeps the counts; the cached eligibility masks
tell apart profile values that compare alike but scale differently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_engine.demo import demo_engine
from bandit_engine.errors import NoOfferError
from bandit_engine.rules import (
    Budget,
    EligibilityRule,
    Exclusions,
    Fallback,
    FrequencyCap,
    History,
    MemoryRuleState,
    Rules,
)

T0 = 1_800_000_000.0
CAPS = (("bundle", 10.0, 2), ("deal", 25.0, 3), ("bundle", 40.0, 4), ("course", 25.0, 1))
MAX_WINDOW = 40.0


class _PlainShows:
    """The per-user show lists as MemoryRuleState kept them before the incremental counts."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, str, float]]] = {}

    def record(self, key: str, shows: Sequence[tuple[str, str]], now: float) -> None:
        if not shows:  # nothing shown: the user's row is not touched (nor pruned)
            return
        rows = self.rows.setdefault(key, [])
        if rows and rows[0][2] <= now - MAX_WINDOW:
            rows[:] = [r for r in rows if r[2] > now - MAX_WINDOW]
        rows.extend((scope, item, now) for scope, item in shows)

    def blocked(self, key: str, now: float) -> list[set[str]]:
        rows = [r for r in self.rows.get(key, []) if r[2] > now - MAX_WINDOW]
        out = []
        for scope, window, limit in CAPS:
            counts: dict[str, int] = {}
            for s, item, ts in rows:
                if s == scope and ts > now - window:
                    counts[item] = counts.get(item, 0) + 1
            out.append({item for item, n in counts.items() if n >= limit})
        return out


_op: st.SearchStrategy[tuple[str, str, list[tuple[str, str]]]] = st.one_of(
    st.tuples(
        st.just("record"),
        st.sampled_from(["u1", "u2"]),
        st.lists(st.tuples(st.sampled_from(["bundle", "deal", "course"]), st.sampled_from("abc"))),
    ),
    st.tuples(st.just("read"), st.sampled_from(["u1", "u2"]), st.just([])),
    st.tuples(st.just("forget"), st.sampled_from(["u1", "u2"]), st.just([])),
)
# mostly forward steps (some past a whole window), sometimes backwards; whole seconds land
# exactly on the windows' edges (a show exactly one window old is out of it)
_step = st.one_of(
    st.sampled_from([0.0, 1.0, 5.0, 10.0, 15.0, 25.0, 40.0, -5.0, -10.0]),
    st.floats(0.0, 15.0),
    st.floats(-30.0, 0.0),
)


@settings(max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_op, _step), max_size=80))
def test_incremental_cap_counts_equal_a_recount_of_the_shows(
    ops: list[tuple[tuple[str, str, list[tuple[str, str]]], float]],
) -> None:
    state = MemoryRuleState()
    spec = state.track_caps(CAPS)
    plain = _PlainShows()
    now = T0
    for (kind, key, shows), step in ops:
        now += step
        if kind == "record":
            state.record_show(key, shows, [], now=now, day=0, forget_before=now - MAX_WINDOW)
            plain.record(key, shows, now)
        elif kind == "forget":
            assert state.forget(key) == len(plain.rows.pop(key, []))
        else:
            expected = plain.blocked(key, now)
            got = state.cap_blocked(key, now, spec)
            if got is None:  # times went backwards: the runner recounts from history
                hist = state.history(key, now - MAX_WINDOW, orders=False)
                assert sorted(hist.shows) == sorted(
                    r for r in plain.rows.get(key, []) if r[2] > now - MAX_WINDOW
                )
            else:
                assert [set(s) for s in got] == expected
        # the kept shows are the plain lists', in the same order
        assert state.history(key, -np.inf, orders=False).shows == plain.rows.get(key, [])


def test_caps_tracked_after_shows_were_kept_are_rebuilt_from_them() -> None:
    state = MemoryRuleState()
    for i in range(3):
        state.record_show("u", [("bundle", "a")], [], now=T0 + i, day=0, forget_before=T0 - 99)
    spec = state.track_caps([("bundle", 10.0, 3)])
    assert state.cap_blocked("u", T0 + 3, spec) == [{"a"}]
    assert state.cap_blocked("u", T0 + 10.5, spec) == [set()]  # the first show left the window
    other = state.track_caps([("bundle", 10.0, 2)])  # rebuilt: three shows kept, two counted
    assert state.cap_blocked("u", T0 + 10.5, other) == [{"a"}]
    assert state.cap_blocked("u", T0 + 10.5, spec) is None  # other caps now: the reader recounts


class _RecountingState:
    """A RuleState that only offers the protocol (no incremental counts): the runner recounts."""

    def __init__(self) -> None:
        self.inner = MemoryRuleState()

    def user_key(self, user_id: str) -> str:
        return self.inner.user_key(user_id)

    def history(self, key: str, since: float, *, orders: bool) -> History:
        return self.inner.history(key, since, orders=orders)

    def budget_used(self, day: int, at_least: int) -> Mapping[tuple[str, str], int]:
        return self.inner.budget_used(day, at_least)

    def record_show(
        self,
        key: str | None,
        shows: Sequence[tuple[str, str]],
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
        forget_before: float,
    ) -> None:
        self.inner.record_show(
            key, shows, budget_units, now=now, day=day, forget_before=forget_before
        )

    def record_order(
        self,
        key: str | None,
        deal_id: str,
        course_id: str,
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
    ) -> None:
        self.inner.record_order(key, deal_id, course_id, budget_units, now=now, day=day)

    def forget(self, key: str) -> int:
        return self.inner.forget(key)


def test_an_engine_with_incremental_counts_decides_as_one_that_recounts() -> None:
    # windows of minutes so that shows expire during the run; times sometimes step back
    rules = Rules(
        eligibility=(
            EligibilityRule("price", "deal.price <= 2 * groupbuy.avg_ticket", if_missing="allow"),
        ),
        caps=(
            FrequencyCap("b", "bundle", 2, 0.01),
            FrequencyCap("d", "deal", 3, 0.03),
            FrequencyCap("c", "course", 4, 0.02),
        ),
        budgets=(Budget("daily", "deal", 40, pacing="even"),),
        exclusions=Exclusions(bought_courses=True, ordered_deals_days=0.05),
        fallback=Fallback("policy", policy="uniform:seed=0"),
    )
    engines = [demo_engine(seed=0, policy="linucb", start_time=T0) for _ in range(2)]
    engines[0].use_rules(rules)
    engines[1].use_rules(rules, _RecountingState())
    assert engines[0].rules is not None and engines[0].rules._fast_caps is not None
    assert engines[1].rules is not None and engines[1].rules._fast_caps is None
    rng = np.random.default_rng(3)
    users = [f"U{int(u):06d}" for u in rng.integers(1, 30, 1500)]
    t = T0 + 3600
    outcomes: list[list[object]] = [[], []]
    for i, user in enumerate(users):
        t += 60.0 * rng.random()
        at = t - (3000.0 * rng.random() if rng.random() < 0.1 else 0.0)
        order, forget = rng.random() < 0.03, rng.random() < 0.005
        for k, engine in enumerate(engines):
            try:
                d = engine.decide(user, decision_id=f"d{i}", now=at)
            except NoOfferError as exc:
                outcomes[k].append(str(exc))
                continue
            outcomes[k].append((d.bundle_id, d.propensity, d.mode, d.candidates))
            if order:
                engine.report(d.decision_id, "order", value=50.0, at=at)
            if forget:
                assert engine.rules is not None
                engine.rules.forget(user)
    assert outcomes[0] == outcomes[1]
    assert len({o[0] for o in outcomes[0] if isinstance(o, tuple)}) > 10


def test_cached_rule_masks_tell_apart_values_that_compare_alike() -> None:
    engine = demo_engine(seed=0, policy="uniform", start_time=T0)
    engine.use_rules(
        Rules(eligibility=(EligibilityRule("price", "deal.price <= 131 * groupbuy.avg_ticket"),))
    )
    rr = engine.rules
    assert rr is not None
    prof = {"groupbuy": {"city": "beijing", "avg_ticket": 1}}
    cs = engine.catalog.eligible_for(prof, T0, None)
    by_number, _ = rr.keep_mask(cs, prof, None, T0)
    # True == 1, but a scaled boolean is undecided (excluded) while a scaled 1 is 131.0, which
    # keeps one of the two Beijing deals
    by_bool, reason = rr.keep_mask(
        cs, {"groupbuy": {"city": "beijing", "avg_ticket": True}}, None, T0
    )
    assert by_bool is not None and not by_bool.any() and "rule 'price'" in reason
    assert by_number is not None and 0 < by_number.sum() < by_number.size
    again, _ = rr.keep_mask(cs, prof, None, T0)
    assert again is by_number  # the cache served the number's mask again
    assert not by_number.flags.writeable  # shared, so read-only
