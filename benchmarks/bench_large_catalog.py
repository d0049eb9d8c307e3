"""Large catalogs: the factored policies on 1,000 deals x 200 courses per city, and how far their
factorised posterior is from the exact one.

    python benchmarks/bench_large_catalog.py [--decisions 5000] [--warmup 20000] [--policy ucb]

Part 0 (the issue-9 target, engine level): an :class:`~bandit_engine.Engine` with the demo profile
schema (fitted on the demo world's 2,000 users, 5 cities) and an unlisted catalog
(``materialize=False``) of 1,000 deals in each of the 5 cities x 200 courses: 200,000 eligible
pairs per user, 1,000,000 bundle ids. Each round ``decide`` for a demo user, a click 5% of the
time and an order 1%, learned when the one-second window closes. Reports decisions/s (decide +
report + learn), decide p50/p99, the memory the engine allocated (tracemalloc, after warm-up),
the process's peak RSS, and save / load times of the engine file.

Part 1 (speed, policy level): 5 cities, each 1,000 deals x 200 courses (200,000 eligible pairs
per decision, 1,000,000 bundle ids), deal side 30 columns, course side 25, a 10 x 8 pairing table
(k = 136). Each decision builds the user's grid (four user-dependent columns per side, as
profile-match flags would be), chooses, and learns the reward of the chosen pair at once. The
model is first trained on ``--warmup`` decisions (untimed; one BLAS thread), then ``--decisions`` are timed:
decisions/s (choose + learn), p50/p99 of choose, pairs scored per decision, the state's memory
(tracemalloc) and JSON save/load times. The peer in the same run is a full scan of the same grid
(numpy, every pair's mean and width), the cost a search without bounds would pay.

Part 2 (approximation): on a 30 x 10 grid, the factorised (ADF) posterior after 2,000 random
observations against the exact joint Gaussian posterior of the same model (all deal, course and
bundle effects as one-hot columns of one ridge regression): correlation of the pairs' means and
the ratio of the widths.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import tracemalloc

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bandit_engine import Engine
from bandit_engine.catalog import Catalog, EligibilityRules
from bandit_engine.demo import demo_world
from bandit_engine.policies import make_policy
from bandit_engine.policies.factored import FactoredTS, FactoredUCB
from bandit_engine.records import PairGrid
from bandit_engine.rewards import RewardSpec
from bandit_engine.simulation.engines import DEMO_SCHEMA
from bandit_engine.simulation.population import CITIES, CUISINES, FORMATS, TOPICS

N_CITIES, N_DEALS, N_COURSES = 5, 1000, 200
K_DEAL, K_COURSE, G, H = 30, 25, 10, 8
USER_COLS = 4


class World:
    """Deals, courses and a hidden additive truth (parts + cells + user x part match)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.deal_ids = [tuple(f"c{c}-d{i}" for i in range(N_DEALS)) for c in range(N_CITIES)]
        self.course_ids = tuple(f"k{j}" for j in range(N_COURSES))
        self.D = [rng.normal(size=(N_DEALS, K_DEAL)) for _ in range(N_CITIES)]
        self.C = rng.normal(size=(N_COURSES, K_COURSE))
        self.dcell = [rng.integers(0, G, N_DEALS).astype(np.intp) for _ in range(N_CITIES)]
        self.ccell = rng.integers(0, H, N_COURSES).astype(np.intp)
        self.qd = [0.5 * rng.normal(size=N_DEALS) for _ in range(N_CITIES)]
        self.qc = 0.5 * rng.normal(size=N_COURSES)
        self.cell = 0.5 * rng.normal(size=(G, H))

    def grid(self) -> tuple[int, PairGrid, np.ndarray, np.ndarray]:
        rng = self.rng
        city = int(rng.integers(N_CITIES))
        D = self.D[city].copy()
        C = self.C.copy()
        ud = rng.random(USER_COLS) < 0.3  # the user's "lists this value" flags
        uc = rng.random(USER_COLS) < 0.3
        D[:, :USER_COLS] = (self.D[city][:, :USER_COLS] > 1.0) & ud
        C[:, :USER_COLS] = (self.C[:, :USER_COLS] > 1.0) & uc
        grid = PairGrid(
            self.deal_ids[city],
            self.course_ids,
            D,
            C,
            self.dcell[city],
            self.ccell,
            G,
            H,
        )
        return city, grid, D, C

    def reward(self, city: int, grid: PairGrid, d: int, c: int) -> float:
        logit = (
            -2.0
            + self.qd[city][d]
            + self.qc[c]
            + self.cell[grid.deal_cell[d], grid.course_cell[c]]
            + 0.8 * grid.deal_features[d, :USER_COLS].sum()
            + 0.8 * grid.course_features[c, :USER_COLS].sum()
        )
        return float(self.rng.random() < 1.0 / (1.0 + np.exp(-logit)))


def _step(policy: FactoredUCB | FactoredTS, world: World) -> tuple[float, int]:
    city, grid, D, C = world.grid()
    a = time.perf_counter()
    ch = policy.choose_grid(grid)
    took = time.perf_counter() - a
    r = world.reward(city, grid, ch.deal, ch.course)
    policy.update_pair(
        grid.deal_ids[ch.deal],
        grid.course_ids[ch.course],
        D[ch.deal],
        C[ch.course],
        int(grid.deal_cell[ch.deal]),
        int(grid.course_cell[ch.course]),
        r,
    )
    return took, ch.scored


def full_scan(policy: FactoredUCB, world: World, n: int) -> float:
    """Seconds per decision of scoring every pair (the same vectorised scorer, no bounds)."""
    start = time.perf_counter()
    for _ in range(n):
        _, grid, _, _ = world.grid()
        np.argmax(policy.ucb_grid(grid))
    return (time.perf_counter() - start) / n


def speed(kind: str, n: int, warmup: int) -> None:
    world = World(0)
    policy: FactoredUCB | FactoredTS = FactoredUCB(seed=0) if kind == "ucb" else FactoredTS(seed=0)
    tracemalloc.start()
    for _ in range(warmup):
        _step(policy, world)
    state_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    lat = np.empty(n)
    scored = np.empty(n)
    start = time.perf_counter()
    for i in range(n):
        lat[i], scored[i] = _step(policy, world)
    total = time.perf_counter() - start
    a = time.perf_counter()
    text = json.dumps(policy.get_state())
    save = time.perf_counter() - a
    a = time.perf_counter()
    twin = type(policy)(seed=0)
    twin.set_state(json.loads(text))
    load = time.perf_counter() - a
    scan = full_scan(policy, world, 20) if isinstance(policy, FactoredUCB) else float("nan")
    print(
        f"factored_{kind}: {N_CITIES} cities x {N_DEALS} deals x {N_COURSES} courses, k = "
        f"{policy.n_shared}, after {warmup} learned decisions"
    )
    print(f"  decisions/s (choose + learn): {n / total:,.0f}")
    print(
        f"  choose p50 {np.percentile(lat, 50) * 1e3:.2f} ms, p99 "
        f"{np.percentile(lat, 99) * 1e3:.2f} ms, max {lat.max() * 1e3:.2f} ms"
    )
    print(
        f"  pairs scored per decision: median {np.median(scored):,.0f}, p99 "
        f"{np.percentile(scored, 99):,.0f} of {N_DEALS * N_COURSES:,}"
    )
    print(
        f"  deals / courses / bundles with state: {len(policy.deals_):,} / "
        f"{len(policy.courses_):,} / {len(policy.bundles_):,}"
    )
    print(f"  memory allocated while learning (state + caches): {state_bytes / 1e6:,.1f} MB")
    print(f"  save {save:.2f} s ({len(text) / 1e6:.1f} MB JSON), load {load:.2f} s")
    if isinstance(policy, FactoredUCB):
        print(
            f"  peer, full scan of the grid: {scan * 1e3:.1f} ms per decision "
            f"({scan / np.percentile(lat, 50):.0f}x the p50 of the bounded search)"
        )


def large_catalog(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,000 deals in each of 5 cities and 200 courses, attributes drawn like the demo's."""
    rng = np.random.default_rng(seed)
    n = N_CITIES * N_DEALS
    deals = pd.DataFrame(
        {
            "deal_id": [f"D{i:05d}" for i in range(n)],
            "city": np.repeat(np.asarray(CITIES[:N_CITIES], dtype=object), N_DEALS),
            "cuisine": rng.choice(np.asarray(CUISINES, dtype=object), n),
            "price": np.round(np.exp(rng.normal(np.log(120.0), 0.4, n))),
            "discount": np.round(rng.uniform(0.0, 0.5, n), 2),
        }
    )
    courses = pd.DataFrame(
        {
            "course_id": [f"C{j:04d}" for j in range(N_COURSES)],
            "topic": rng.choice(np.asarray(TOPICS, dtype=object), N_COURSES),
            "format": rng.choice(np.asarray(FORMATS, dtype=object), N_COURSES),
            "price": np.round(np.exp(rng.normal(np.log(120.0), 0.5, N_COURSES))),
            "rating": np.round(rng.uniform(3.8, 5.0, N_COURSES), 1),
        }
    )
    return deals, courses


def engine_speed(policy_name: str, n: int, warmup: int) -> None:
    world = demo_world(0, start_time=1.7e9)
    tables = {"knowledge": world.knowledge, "groupbuy": world.groupbuy}
    deals, courses = large_catalog()
    tracemalloc.start()
    features = DEMO_SCHEMA.fit(tables, now=world.config.start_time)
    catalog = Catalog(
        deals,
        courses,
        rules=EligibilityRules(user_city="groupbuy.city", deal_city="city"),
        materialize=False,
    )
    engine = Engine(
        features,
        catalog,
        make_policy(policy_name, seed=0),
        RewardSpec(click=1, order=2, window=1.0),
        model_id="bench-large-catalog",
    )
    engine.load_profiles(tables)
    rng = np.random.default_rng(0)
    total_n = warmup + n
    # users with a city (a group-buying profile): their grid is one city's 200,000 pairs
    with_city = [world.user_id(int(u)) for u in range(world.n_users)]
    with_city = [u for u in with_city if (engine.profiles.get(u) or {}).get("groupbuy")]
    users = [with_city[int(i)] for i in rng.integers(0, len(with_city), total_n)]
    u_click = rng.random(total_n)
    t0 = 1.7e9 + 3600

    def one(i: int) -> float:
        t = t0 + 2.0 * i
        a = time.perf_counter()
        d = engine.decide(users[i], now=t)
        took = time.perf_counter() - a
        if u_click[i] < 0.05:
            engine.report(d.decision_id, "click", at=t)
            if u_click[i] < 0.01:
                engine.report(d.decision_id, "order", value=100.0, at=t)
        return took

    for i in range(warmup):
        one(i)
    engine_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    lat = np.empty(n)
    start = time.perf_counter()
    for i in range(n):
        lat[i] = one(warmup + i)
    total = time.perf_counter() - start
    path = os.path.join(tempfile.mkdtemp(), "large.bandit")
    a = time.perf_counter()
    engine.save(path)
    save = time.perf_counter() - a
    a = time.perf_counter()
    Engine.load(path)
    load = time.perf_counter() - a
    size = os.path.getsize(path)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"engine, {policy_name}: {N_CITIES} cities x {N_DEALS} deals x {N_COURSES} courses "
        f"({len(catalog):,} bundle ids, {N_DEALS * N_COURSES:,} eligible per user), unlisted "
        f"catalog, after {warmup} decisions"
    )
    print(f"  decisions/s (decide + report + learn): {n / total:,.0f}")
    print(
        f"  decide p50 {np.percentile(lat, 50) * 1e3:.2f} ms, p99 "
        f"{np.percentile(lat, 99) * 1e3:.2f} ms, max {lat.max() * 1e3:.2f} ms"
    )
    print(
        f"  memory allocated by the engine (tracemalloc): {engine_bytes / 1e6:,.1f} MB; "
        f"process peak RSS {rss:,.0f} MB"
    )
    print(f"  save {save:.2f} s, load {load:.2f} s ({size / 1e6:.1f} MB file)")


def approximation(seed: int = 0) -> None:
    """ADF vs the exact joint posterior of the same model on a small grid."""
    rng = np.random.default_rng(seed)
    n_d, n_c, k_d, k_c, g, h = 30, 10, 3, 2, 3, 4
    grid = PairGrid(
        tuple(f"d{i}" for i in range(n_d)),
        tuple(f"c{j}" for j in range(n_c)),
        rng.normal(size=(n_d, k_d)),
        rng.normal(size=(n_c, k_c)),
        rng.integers(0, g, n_d).astype(np.intp),
        rng.integers(0, h, n_c).astype(np.intp),
        g,
        h,
    )
    qd, qc = rng.normal(size=n_d), rng.normal(size=n_c)
    policy = FactoredUCB(seed=0)
    policy.choose_grid(grid)
    k = policy.n_shared
    rows = []
    ys = []
    # skewed exposure (some deals often, many rarely), as a bandit's own log would be
    p_deal = rng.dirichlet(np.full(n_d, 0.3))
    for _ in range(2000):
        d, c = int(rng.choice(n_d, p=p_deal)), int(rng.integers(n_c))
        y = qd[d] + qc[c] + rng.normal()
        policy.update_pair(
            grid.deal_ids[d],
            grid.course_ids[c],
            grid.deal_features[d],
            grid.course_features[c],
            int(grid.deal_cell[d]),
            int(grid.course_cell[c]),
            y,
        )
        row = np.zeros(k + n_d + n_c + n_d * n_c)
        row[0] = 1.0
        row[1 : 1 + k_d] = grid.deal_features[d]
        row[1 + k_d : 1 + k_d + k_c] = grid.course_features[c]
        row[1 + k_d + k_c + int(grid.deal_cell[d]) * h + int(grid.course_cell[c])] = 1.0
        row[k + d] = row[k + n_d + c] = row[k + n_d + n_c + d * n_c + c] = 1.0
        rows.append(row)
        ys.append(y)
    X = np.array(rows)
    prior = np.r_[
        np.full(k, policy.l2),
        np.full(n_d, policy.l2_deal),
        np.full(n_c, policy.l2_course),
        np.full(n_d * n_c, policy.l2_bundle),
    ]
    cov = np.linalg.inv(X.T @ X + np.diag(prior))
    coef = cov @ X.T @ np.array(ys)
    Z = np.zeros((n_d, n_c, X.shape[1]))
    for d in range(n_d):
        for c in range(n_c):
            z = Z[d, c]
            z[0] = 1.0
            z[1 : 1 + k_d] = grid.deal_features[d]
            z[1 + k_d : 1 + k_d + k_c] = grid.course_features[c]
            z[1 + k_d + k_c + int(grid.deal_cell[d]) * h + int(grid.course_cell[c])] = 1.0
            z[k + d] = z[k + n_d + c] = z[k + n_d + n_c + d * n_c + c] = 1.0
    exact_mean = Z @ coef
    exact_var = np.einsum("ijk,kl,ijl->ij", Z, cov, Z)
    mean, var = policy.score_pairs(grid)
    corr = float(np.corrcoef(mean.ravel(), exact_mean.ravel())[0, 1])
    ratio = np.sqrt(var / exact_var).ravel()
    rank = np.argsort(np.argsort(-exact_mean.ravel()))
    top = int(rank[int(np.argmax(mean))])
    print("approximation (30 deals x 10 courses, 2,000 skewed observations, noise sd 1):")
    print(f"  correlation of pair means, ADF vs exact joint posterior: {corr:.3f}")
    print(
        f"  width ratio ADF / exact: median {np.median(ratio):.2f}, 5%..95% "
        f"{np.percentile(ratio, 5):.2f}..{np.percentile(ratio, 95):.2f}"
    )
    print(f"  the pair ADF ranks first is number {top + 1} of {n_d * n_c} under the exact mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=20000)
    ap.add_argument("--policy", choices=["ucb", "ts"], default="ucb")
    args = ap.parse_args()
    # One BLAS thread, as `bandit simulate` pins it: the policy's matrices are small (k = 136)
    # and OpenBLAS's second thread only adds synchronisation, badly so when the other core is busy.
    with threadpool_limits(1):
        engine_speed(f"factored_{args.policy}", args.decisions, args.warmup)
        speed(args.policy, args.decisions, args.warmup)
        approximation()


if __name__ == "__main__":
    main()
