"""Large catalogs: the factored policies on 1,000 deals x 200 courses per city, and how far their
factorised posterior is from the exact one.

    python benchmarks/bench_large_catalog.py [--decisions 5000] [--warmup 20000] [--policy ucb]

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
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from bandit_engine.policies.factored import FactoredTS, FactoredUCB
from bandit_engine.records import PairGrid

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
        speed(args.policy, args.decisions, args.warmup)
        approximation()


if __name__ == "__main__":
    main()
