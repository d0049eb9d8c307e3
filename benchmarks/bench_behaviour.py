"""Full engine path with a live-behaviour block: decisions/s, decide latency, bytes per user.

    python benchmarks/bench_behaviour.py [--decisions 20000] [--users 1000000] [--policy pair_ucb]

Part 1 drives the demo engine (demo schema incl. the Behaviour block) through decide -> click
(5%) -> order (1%) with the policy learning as windows close (a one-second window), and reports
decisions/s and p50/p99 of ``decide``, with the same loop on LinUCB *without* the behaviour
block as the peer (the ratio is what carries across machines). Part 2 fills a BehaviourStore
with ``--users`` users (3 impressions + 1 click each) and measures its memory with tracemalloc.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from bandit_engine.demo import build_engine, demo_schema, demo_world
from bandit_engine.features import ProfileSchema
from bandit_engine.features.behaviour import Behaviour, BehaviourStore
from bandit_engine.policies.registry import make_policy
from bandit_engine.rewards import RewardSpec


def _without_behaviour() -> ProfileSchema:
    schema = demo_schema()
    platforms = {p: list(f) for p, f in schema.platforms.items()}
    return ProfileSchema(platforms, key=schema.key)  # the same fields, no Behaviour block


def engine_path(n: int, policy: str, *, behaviour: bool = True) -> float:
    world = demo_world(0, start_time=1.7e9)
    engine = build_engine(
        world,
        make_policy(policy, seed=0),
        schema=None if behaviour else _without_behaviour(),
        rewards=RewardSpec(click=1, order=2, window=1.0),
    )
    rng = np.random.default_rng(0)
    users = [world.user_id(int(u)) for u in rng.integers(0, world.n_users, n)]
    u_click = rng.random(n)
    t0 = 1.7e9 + 3600
    for i in range(min(n, 1000)):  # warm-up, untimed: first calls, caches, compiled kernels
        engine.decide(users[i], now=t0 - 3000 + i)
    lat = np.empty(n)
    start = time.perf_counter()
    for i in range(n):
        t = t0 + 2.0 * i
        a = time.perf_counter()
        d = engine.decide(users[i], now=t)
        lat[i] = time.perf_counter() - a
        if u_click[i] < 0.05:
            engine.report(d.decision_id, "click", at=t)
            if u_click[i] < 0.01:
                engine.report(d.decision_id, "order", value=100.0, at=t)
    total = time.perf_counter() - start
    label = policy if behaviour else f"{policy} without the behaviour block (peer)"
    print(
        f"{label}: {n / total:,.0f} decisions/s (decide+report+learn), decide p50 "
        f"{np.percentile(lat, 50) * 1e6:.0f} us, p99 {np.percentile(lat, 99) * 1e6:.0f} us; "
        f"x {engine.n_context} wide, candidate rows {engine.n_arm_features} wide"
    )
    return n / total


def memory(n_users: int) -> None:
    world = demo_world(0, start_time=1.7e9)
    engine = build_engine(world, make_policy("popularity", seed=0))
    spec = Behaviour("behaviour", max_users=n_users)
    tracemalloc.start()
    store = BehaviourStore(spec)
    store.bind(engine.catalog)
    base = tracemalloc.get_traced_memory()[0]
    n_b = len(engine.catalog.bundle_ids)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, n_b, (n_users, 3)).tolist()
    t = 1.7e9
    for u in range(n_users):
        k = store.key(f"U{u:09d}")
        r = rows[u]
        store.observe_decision(k, r[0], t)
        store.observe_decision(k, r[1], t)
        store.observe_decision(k, r[2], t)
        store.observe_event(k, r[0], "click", t)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(
        f"behaviour store: {len(store):,} users, {used / len(store):.0f} bytes per user "
        f"(row {store.width * 4} B float32 + key + index; capacity growth included)"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=20000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--policy", action="append")
    args = ap.parse_args()
    if args.decisions:
        # one BLAS thread, as `bandit simulate` and `serve-policy --blas-threads 1` run: with two
        # OpenBLAS threads on a 2-core machine a per-decision Cholesky (factored_ts) spins badly
        with threadpool_limits(limits=1, user_api="blas"):
            peer = engine_path(args.decisions, "linucb", behaviour=False)
            for p in args.policy or ["linucb", "pair_ucb", "pair_ts"]:
                rate = engine_path(args.decisions, p)
                print(f"  {p} with behaviour / LinUCB without: {rate / peer:.2f}x")
    if args.users:
        memory(args.users)
