"""What business rules cost a decision: decide p50 / p99 with and without rules, same run.

    python benchmarks/bench_rules.py [--decisions 20000] [--policy linucb] [--breakdown]

The demo schema and world (24 deals x 10 courses, 2,000 users), decide -> click (5%) -> order
(1%), interleaved: each round one engine with the rules and one without decide for the same user
at the same time, so machine load hits both alike. The rules are one of each kind:

* a static eligibility predicate (``course.rating >= 3.0``, computed once per catalog version);
* a predicate on profile x bundle columns (``deal.price <= 3 * groupbuy.avg_ticket``, per
  decision, ``if_missing = "allow"``);
* a frequency cap (3 shows per bundle per user per 7 days) and one per deal;
* a paced decisions budget on every deal (large enough not to bind) and an orders budget;
* exclusion of bought courses and of deals ordered within 30 days;
* a control-policy fallback (``uniform`` over every city's bundles that pass the rules) for the
  users whose city leaves nothing (their decisions are timed too; a no-offer is counted).

Part 1 is the in-process engine with the counters in memory; part 2 the logged path
(:class:`~bandit_engine.service.LoggedEngine` on a SQLite file, ``synchronous=OFF``, 100
decisions per transaction as the server's group commit does), where the counters are read and
written in the log inside the decision's transaction. The target is the difference of the p99s.

With rules the policy is given the city's whole list and the rules' mask (``Policy.choose(...,
mask=)``), so it keeps its per-list caches and the policy's work is the plain engine's: "with
rules" minus "without" is what the rules themselves cost. A third engine, without rules, is given
each decision's shrunk candidate list (``candidates=``): what deciding over a smaller, per-user
list costs the policy, i.e. what the rules cost before the mask existed (the ridge policies cache
their scoring blocks per candidate list, and per-user lists miss that cache).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from bandit_engine.demo import build_engine, demo_world
from bandit_engine.errors import NoOfferError
from bandit_engine.policies.registry import make_policy
from bandit_engine.rewards import RewardSpec
from bandit_engine.rules import Budget, EligibilityRule, Exclusions, Fallback, FrequencyCap, Rules
from bandit_engine.service import LoggedEngine
from bandit_engine.store import open_log

T0 = 1.7e9
KEY = os.urandom(32)


def rules() -> Rules:
    return Rules(
        eligibility=(
            EligibilityRule("rated", "course.rating >= 3.0"),
            EligibilityRule("price", "deal.price <= 3 * groupbuy.avg_ticket", if_missing="allow"),
        ),
        caps=(FrequencyCap("bundle", "bundle", 3, 7), FrequencyCap("deal", "deal", 10, 7)),
        budgets=(
            Budget("deal_daily", "deal", 1_000_000, pacing="even"),
            Budget("deal_orders", "deal", 1_000_000, count="orders"),
        ),
        exclusions=Exclusions(bought_courses=True, ordered_deals_days=30),
        fallback=Fallback("policy", policy="uniform:seed=0"),
    )


def run(n: int, policy: str, logged: bool, folder: Path) -> None:
    world = demo_world(0, start_time=T0)
    spec = RewardSpec(click=1, order=2, window=1.0)
    plain = build_engine(world, make_policy(policy, seed=0), rewards=spec)
    ruled = build_engine(world, make_policy(policy, seed=0), rewards=spec)
    masked = build_engine(world, make_policy(policy, seed=0), rewards=spec)
    ruled.use_rules(rules())
    engines: list = [plain, ruled]
    if logged:
        engines = []
        for name, eng in (("plain", plain), ("ruled", ruled)):
            svc = LoggedEngine(
                eng, open_log(str(folder / f"{name}.sqlite"), hmac_key=KEY, synchronous="OFF")
            )
            if eng is ruled:
                svc.use_rules(rules())
            engines.append(svc)
    rng = np.random.default_rng(0)
    users = [world.user_id(int(u)) for u in rng.integers(0, world.n_users, n + 1000)]
    u_click = rng.random(n + 1000)
    lat = np.empty((3, n))
    t_start = T0 + 3600
    blocks = [None, None]
    no_offer = 0
    for i in range(n + 1000):  # the first 1,000 rounds warm up, untimed
        t = t_start + 2.0 * i
        if logged and i % 100 == 0:
            for k, svc in enumerate(engines):
                if blocks[k] is not None:
                    blocks[k].__exit__(None, None, None)
                blocks[k] = svc.log.transaction()
                blocks[k].__enter__()
        for k, eng in enumerate(engines):
            a = time.perf_counter()
            try:
                d = eng.decide(users[i], decision_id=f"d{i}", now=t)
            except NoOfferError:
                d = None
                no_offer += 1
            dt = time.perf_counter() - a
            if i >= 1000:
                lat[k, i - 1000] = dt
            if d is None:
                if k == 1 and i >= 1000:
                    lat[2, i - 1000] = np.nan
                continue
            if u_click[i] < 0.05:
                eng.report(d.decision_id, "click", at=t)
                if u_click[i] < 0.01:
                    eng.report(d.decision_id, "order", value=100.0, at=t)
            if k == 1 and not logged and d.mode is not None:  # a fallback: no peer for it
                if i >= 1000:
                    lat[2, i - 1000] = np.nan
            elif k == 1 and not logged:  # the peer decides over the same shrunk list
                a = time.perf_counter()
                masked.decide(users[i], candidates=list(d.candidates), decision_id=f"d{i}", now=t)
                if i >= 1000:
                    lat[2, i - 1000] = time.perf_counter() - a
    if logged:
        for block in blocks:
            if block is not None:
                block.__exit__(None, None, None)
    path = "logged path (SQLite, counters in the log)" if logged else "in-process engine"
    p = np.nanpercentile(lat * 1e6, [50, 99], axis=1)
    print(
        f"{path}, {policy}, {n} decisions: without rules p50 {p[0, 0]:.0f} us p99 {p[1, 0]:.0f} us;"
        f" with rules p50 {p[0, 1]:.0f} us p99 {p[1, 1]:.0f} us;"
        f" added p50 {p[0, 1] - p[0, 0]:+.0f} us, p99 {p[1, 1] - p[1, 0]:+.0f} us"
        f" (ratio with / without: p50 x{p[0, 1] / p[0, 0]:.2f}, p99 x{p[1, 1] / p[1, 0]:.2f};"
        f" {no_offer} no-offers)"
    )
    if not logged:
        fb = int(np.isnan(lat[2]).sum())
        print(
            f"    ({fb} fallback decisions have no peer) the shrunk lists passed as candidates (the"
            f" path before the mask): p50 {p[0, 2]:.0f} us p99 {p[1, 2]:.0f} us, i.e."
            f" p50 {p[0, 2] - p[0, 0]:+.0f} us, p99 {p[1, 2] - p[1, 0]:+.0f} us over no rules"
        )


def breakdown(n: int, policy: str) -> None:
    """Median time per call of the rules' parts on the in-process engine (each part wrapped in a
    ``perf_counter`` pair, which adds well under a microsecond per call)."""
    world = demo_world(0, start_time=T0)
    spec = RewardSpec(click=1, order=2, window=1.0)
    engine = build_engine(world, make_policy(policy, seed=0), rewards=spec)
    engine.use_rules(rules())
    rr = engine.rules
    assert rr is not None
    times: dict[str, list[float]] = {}

    def timed(owner: object, name: str, label: str) -> None:
        f = getattr(owner, name)
        out = times.setdefault(label, [])

        def g(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                out.append(time.perf_counter() - t)

        setattr(owner, name, g)

    for owner, name, label in (
        (engine, "decide", "decide (whole)"),
        (rr, "keep_mask", "rules: keep_mask (predicates, caps, exclusions, budgets)"),
        (rr, "_blocked", "rules:   of which the counters (caps, exclusions, budgets)"),
        (
            rr,
            "_rule_mask",
            "rules:   of which the eligibility rules' mask (cached per list, profile)",
        ),
        (
            rr,
            "_rule",
            "rules:     of which evaluating the profile x bundle predicate (cache misses)",
        ),
        (rr, "record", "rules: counting the served decision"),
        (rr, "user_key", "rules: the user's pseudonym"),
        (engine, "_choose", "policy choice with the mask, and the decision record"),
        (engine.policy, "choose", "  of which the policy's choose"),
    ):
        timed(owner, name, label)
    rng = np.random.default_rng(0)
    users = [world.user_id(int(u)) for u in rng.integers(0, world.n_users, n + 1000)]
    for i in range(n + 1000):
        if i == 1000:
            for v in times.values():
                v.clear()
        t = T0 + 3600 + 2.0 * i
        try:
            d = engine.decide(users[i], decision_id=f"d{i}", now=t)
        except NoOfferError:
            continue
        if rng.random() < 0.05:
            engine.report(d.decision_id, "click", at=t)
    print(f"parts of a decision with rules, {policy}, {n} decisions (median per call):")
    for label, v in times.items():
        print(f"    {label}: {1e6 * float(np.median(v)):.1f} us ({len(v)} calls)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--policy", default="linucb")
    ap.add_argument(
        "--breakdown", action="store_true", help="only time the parts of a ruled decision"
    )
    args = ap.parse_args()
    threadpool_limits(limits=1, user_api="blas")
    if args.breakdown:
        breakdown(args.decisions, args.policy)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args.decisions, args.policy, False, Path(tmp))
        run(args.decisions, args.policy, True, Path(tmp))


if __name__ == "__main__":
    main()
