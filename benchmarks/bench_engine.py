"""Speed and quality of the policies and the engine path, against peers run in the same process.

    python benchmarks/bench_engine.py [--rounds 20000] [--quick] [--repeat 3] [--seed 0]

Workload (issue 2): 32 context features, 50 candidate bundles, Bernoulli rewards with click rates
between 2% and 10%, an online choose -> reward -> update loop in one thread. Contexts are an
intercept plus 31 standard normals / sqrt(31); each bundle has 16 features; the true click rate of
bundle ``a`` for context ``x`` is ``0.02 + 0.08 * sigmoid(x' W z_a)`` (W seeded), so the oracle
knows the best bundle every round. Quality is the mean true click rate of the chosen bundles as a
share of the oracle's (uniform random gets about two thirds); every loop sees the same contexts
and the same pre-drawn reward coins. Timings include input validation (that is what users pay)
but not the reward simulation.

Sections: policy loops on arrays (a plain-numpy disjoint LinUCB as the same-run reference,
bandit-engine LinUCB and LinearTS, MABWiser LinUCB one at a time and in mini-batches of 100);
Vowpal Wabbit (raw text interface as documented, a careful raw loop using pylibvw directly, and
the bandit-engine adapter); the full engine path (inline profile dict -> Engine.decide -> click
report -> attribution window closes -> policy.update); batch scoring. Slow peers run on fewer
rounds (shown in the ``rounds`` column), so their shares cover a shorter horizon.
"""

from __future__ import annotations

import os

# "One thread": keep BLAS single-threaded. The variables must be set before numpy is imported;
# threadpoolctl (if installed) also limits a BLAS that was already loaded.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bandit_engine.catalog import Catalog, EligibilityRules  # noqa: E402
from bandit_engine.engine import Engine  # noqa: E402
from bandit_engine.features import Categorical, Numeric, ProfileSchema, Tags  # noqa: E402
from bandit_engine.policies import thompson  # noqa: E402
from bandit_engine.policies._kernels import kernels  # noqa: E402
from bandit_engine.policies.linucb import LinUCB  # noqa: E402
from bandit_engine.policies.thompson import LinearTS  # noqa: E402
from bandit_engine.rewards import RewardSpec  # noqa: E402

__all__ = ["Workload", "main", "make_workload"]

D, K, P = 32, 50, 16
ALPHA = 0.1  # LinUCB bonus width (all LinUCB implementations)
TS_V = 0.05  # LinearTS posterior scale
L2 = 1.0
_NS = 1e-9


# -- workload -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """Contexts, bundle features, true click rates and pre-drawn reward coins."""

    X: np.ndarray  # (T, D)
    Z: np.ndarray  # (K, P)
    W: np.ndarray  # (D, P)
    rates: np.ndarray  # (T, K) true click probabilities
    coins: np.ndarray  # (T,) uniform: a click iff coin < rate of the chosen bundle
    arms: tuple[str, ...]

    @property
    def oracle(self) -> float:
        return float(self.rates.max(axis=1).mean())

    def share(self, chosen: np.ndarray) -> float:
        """Mean true rate of ``chosen`` (one index per round, from round 0) over the oracle's."""
        n = chosen.shape[0]
        got = self.rates[np.arange(n), chosen].mean()
        return float(got / self.rates[:n].max(axis=1).mean())


def true_rates(X: np.ndarray, Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``0.02 + 0.08 * sigmoid(X W Z')``: click rates in (2%, 10%)."""
    out: np.ndarray = 0.02 + 0.08 / (1.0 + np.exp(-(X @ W @ Z.T)))
    return out


def make_workload(rounds: int, seed: int) -> Workload:
    """The workload; its first ``n`` rounds do not depend on ``rounds`` (separate streams)."""
    model_rng, context_rng, coin_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    Z = model_rng.normal(size=(K, P)) / math.sqrt(P)
    W = model_rng.normal(size=(D, P)) * 0.8
    X = context_rng.normal(size=(rounds, D)) / math.sqrt(D - 1)
    X[:, 0] = 1.0
    coins = coin_rng.random(rounds)
    return Workload(X, Z, W, true_rates(X, Z, W), coins, tuple(f"bundle-{i:02d}" for i in range(K)))


# -- results ------------------------------------------------------------------------------------
@dataclass
class Result:
    section: str
    name: str
    rounds: int
    rates: list[float] = field(default_factory=list)  # rounds (or items) per second, per repeat
    choose_us: np.ndarray | None = None  # per-call choose latencies of the last repeat
    share: float | None = None
    unit: str = "rounds/s"

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def _latencies(ns: list[int]) -> np.ndarray:
    return np.asarray(ns, dtype=np.float64) * 1e-3


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[str]:
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield "env vars only (threadpoolctl not installed)"
        return
    with threadpool_limits(limits=1):
        yield "threadpoolctl + env vars"


# -- policy loops on arrays ---------------------------------------------------------------------
class NumpyLinUCB:
    """The same-run reference: disjoint LinUCB with Sherman–Morrison updates, written as a user
    would in plain numpy (no validation, no bookkeeping, no tie handling)."""

    def __init__(self, alpha: float, l2: float) -> None:
        self.alpha = alpha
        self.A_inv = np.tile(np.eye(D) / l2, (K, 1, 1))
        self.b = np.zeros((K, D))
        self.theta = np.zeros((K, D))

    def choose(self, x: np.ndarray) -> int:
        Ax = self.A_inv @ x
        ucb = self.theta @ x + self.alpha * np.sqrt(Ax @ x)
        return int(np.argmax(ucb))

    def update(self, a: int, x: np.ndarray, r: float) -> None:
        Ai = self.A_inv[a]
        u = Ai @ x
        Ai -= np.outer(u, u) / (1.0 + x @ u)
        self.b[a] += r * x
        self.theta[a] = Ai @ self.b[a]


def run_numpy_reference(wl: Workload, n: int) -> tuple[float, list[int], np.ndarray]:
    pol = NumpyLinUCB(ALPHA, L2)
    X, rates, coins = wl.X, wl.rates, wl.coins
    chosen = np.empty(n, dtype=np.intp)
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for t in range(n):
        x = X[t]
        c0 = clock()
        a = pol.choose(x)
        lat.append(clock() - c0)
        pol.update(a, x, 1.0 if coins[t] < rates[t, a] else 0.0)
        chosen[t] = a
    return n / (time.perf_counter() - t0), lat, chosen


def run_policy(
    wl: Workload, n: int, make: Callable[[], Any]
) -> tuple[float, list[int], np.ndarray]:
    """choose -> reward -> update with a bandit-engine policy on arrays."""
    pol = make()
    X, Z, arms, rates, coins = wl.X, wl.Z, wl.arms, wl.rates, wl.coins
    chosen = np.empty(n, dtype=np.intp)
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for t in range(n):
        x = X[t]
        c0 = clock()
        c = pol.choose(x, arms, Z)
        lat.append(clock() - c0)
        a = c.index
        pol.update(x, arms[a], Z[a], 1.0 if coins[t] < rates[t, a] else 0.0, c.propensity)
        chosen[t] = a
    return n / (time.perf_counter() - t0), lat, chosen


def run_mabwiser(wl: Workload, n: int, batch: int, seed: int) -> tuple[float, np.ndarray]:
    """MABWiser LinUCB (disjoint, same alpha and l2): predict a batch of contexts, then learn
    their rewards. Its first round (a uniformly random arm, needed by ``fit``) is counted."""
    from mabwiser.mab import MAB, LearningPolicy

    mab = MAB(
        arms=list(range(K)),
        learning_policy=LearningPolicy.LinUCB(alpha=ALPHA, l2_lambda=L2),
        seed=seed,
    )
    X, rates, coins = wl.X, wl.rates, wl.coins
    chosen = np.empty(n, dtype=np.intp)
    t0 = time.perf_counter()
    a0 = int(np.random.default_rng(seed).integers(K))
    mab.fit([a0], [1.0 if coins[0] < rates[0, a0] else 0.0], X[:1])
    chosen[0] = a0
    t = 1
    while t < n:
        m = min(batch, n - t)
        ctx = X[t : t + m]
        pred = mab.predict(ctx)
        arms = np.atleast_1d(np.asarray(pred, dtype=np.intp))
        rewards = (coins[t : t + m] < rates[np.arange(t, t + m), arms]).astype(np.float64)
        mab.partial_fit(arms, rewards, ctx)
        chosen[t : t + m] = arms
        t += m
    return n / (time.perf_counter() - t0), chosen


# -- Vowpal Wabbit ------------------------------------------------------------------------------
def _vw_line(values: np.ndarray) -> str:
    return " ".join(f"{j}:{v:.9g}" for j, v in enumerate(values.tolist()) if v)


def run_vw_raw_naive(wl: Workload, n: int, args: list[str], seed: int) -> tuple[float, np.ndarray]:
    """What VW's documented Python interface invites: format the example every round,
    ``Workspace.predict(list_of_lines)``, sample from the PMF, ``Workspace.learn``."""
    import vowpalwabbit

    ws = vowpalwabbit.Workspace(arg_list=[*args, "--random_seed", str(seed)])
    rng = np.random.default_rng(seed)
    X, Z, rates, coins = wl.X, wl.Z, wl.rates, wl.coins
    chosen = np.empty(n, dtype=np.intp)
    t0 = time.perf_counter()
    for t in range(n):
        shared = "shared |U " + _vw_line(X[t])
        actions = ["|A " + _vw_line(z) for z in Z]
        pmf = np.asarray(ws.predict([shared, *actions]), dtype=np.float64)
        pmf /= pmf.sum()
        a = int(rng.choice(K, p=pmf))
        r = 1.0 if coins[t] < rates[t, a] else 0.0
        actions[a] = f"0:{-r!r}:{pmf[a]!r} " + actions[a]
        ws.learn([shared, *actions])
        chosen[t] = a
    rate = n / (time.perf_counter() - t0)
    ws.finish()
    return rate, chosen


def run_vw_raw_fast(wl: Workload, n: int, args: list[str], seed: int) -> tuple[float, np.ndarray]:
    """A careful raw loop: action lines formatted once, multi-line text parsed by ``_parse`` and
    run with pylibvw's ``predict_multi`` / ``learn_multi`` (what the adapter does inside), the
    chosen action alone in the learned example (the adapter's default)."""
    import vowpalwabbit
    from vowpalwabbit import pyvw

    lib = pyvw.pylibvw.vw
    ws = vowpalwabbit.Workspace(arg_list=[*args, "--random_seed", str(seed)])
    rng = np.random.default_rng(seed)
    X, Z, rates, coins = wl.X, wl.Z, wl.rates, wl.coins
    lines = ["|A " + _vw_line(z) for z in Z]
    block = "\n".join(lines)
    chosen = np.empty(n, dtype=np.intp)
    t0 = time.perf_counter()
    for t in range(n):
        shared = "shared |U " + _vw_line(X[t])
        exs = ws._parse(shared + "\n" + block)
        lib.predict_multi(ws, exs)
        pmf = np.asarray(exs[0].get_action_scores(), dtype=np.float64)
        ws._finish_example_multi_ex(exs)
        cum = np.cumsum(pmf)
        a = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), K - 1)
        r = 1.0 if coins[t] < rates[t, a] else 0.0
        exs = ws._parse(f"{shared}\n0:{-r!r}:{pmf[a] / cum[-1]!r} {lines[a]}")
        lib.learn_multi(ws, exs)
        ws._finish_example_multi_ex(exs)
        chosen[t] = a
    rate = n / (time.perf_counter() - t0)
    ws.finish()
    return rate, chosen


# -- the engine path ----------------------------------------------------------------------------
def _engine_world(
    n_users: int, seed: int
) -> tuple[ProfileSchema, dict[str, pd.DataFrame], Catalog]:
    """Two platform tables whose schema encodes to exactly 32 features, and 10 deals x 5
    courses = 50 bundles, all in the users' city and always valid."""
    rng = np.random.default_rng(seed)
    topics = ["python", "finance", "design", "english", "cooking", "photo"]
    cuisines = ["hotpot", "sichuan", "cantonese", "bbq", "noodles", "dessert"]
    ids = [f"U{i:06d}" for i in range(n_users)]

    def tags(vocab: list[str]) -> list[list[str]]:
        # Plain str, as profiles decoded from JSON carry (not numpy's str_).
        return [
            [str(t) for t in rng.choice(vocab, size=rng.integers(0, 3), replace=False)] for _ in ids
        ]

    knowledge = pd.DataFrame(
        {
            "user_id": ids,
            "level": rng.choice(["new", "regular", "vip"], size=n_users),
            "topics": tags(topics),
            "spend": rng.lognormal(4.0, 1.0, n_users),
            "courses": rng.poisson(3.0, n_users).astype(float),
        }
    )
    groupbuy = pd.DataFrame(
        {
            "user_id": ids,
            "city": "shanghai",
            "cuisines": tags(cuisines),
            "orders": rng.poisson(5.0, n_users).astype(float),
            "ticket": rng.lognormal(4.5, 0.5, n_users),
        }
    )
    specs_k: list[Any] = [
        Categorical("level"),
        Tags("topics"),
        Numeric("spend", log=True),
        Numeric("courses", log=True),
    ]
    specs_g: list[Any] = [
        Categorical("city"),
        Tags("cuisines"),
        Numeric("orders", log=True),
        Numeric("ticket", log=True),
    ]
    tables = {"knowledge": knowledge, "groupbuy": groupbuy}
    # Pad with numeric columns until the context has exactly D features.
    extra = 0
    while True:
        schema = ProfileSchema({"knowledge": specs_k, "groupbuy": specs_g}, key="user_id")
        width = schema.fit(tables).n_features
        if width >= D:
            break
        name = f"score{extra}"
        knowledge[name] = rng.normal(size=n_users)
        specs_k.append(Numeric(name))
        extra += 1
    if width != D:  # pragma: no cover - the base schema is narrower than D
        raise RuntimeError(f"engine schema has {width} features, wanted {D}")
    deals = pd.DataFrame(
        {
            "deal_id": [f"D{i:02d}" for i in range(10)],
            "city": "shanghai",
            "cuisine": [cuisines[i % len(cuisines)] for i in range(10)],
            "price": rng.uniform(40, 200, 10),
            "discount": rng.uniform(0.1, 0.5, 10),
        }
    )
    courses = pd.DataFrame(
        {
            "course_id": [f"C{i}" for i in range(5)],
            "topic": topics[:5],
            "format": ["video", "live", "video", "text", "live"],
            "price": rng.uniform(50, 300, 5),
            "rating": rng.uniform(3.5, 5.0, 5),
        }
    )
    catalog = Catalog(
        deals, courses, rules=EligibilityRules(user_city="groupbuy.city", deal_city="city")
    )
    return schema, tables, catalog


@dataclass
class EngineCase:
    schema: ProfileSchema
    tables: dict[str, pd.DataFrame]
    catalog: Catalog
    profiles: list[dict[str, dict[Any, Any]]]
    rates: np.ndarray  # (n_users, K) in the catalog's bundle order
    bundle_col: dict[str, int]
    users: np.ndarray  # (T,) user index per round
    coins: np.ndarray


def make_engine_case(rounds: int, n_users: int, seed: int) -> EngineCase:
    schema, tables, catalog = _engine_world(n_users, seed)
    features = schema.fit(tables)
    x_all = features.transform(tables, now=0.0).to_numpy(dtype=np.float64)
    cands = catalog.candidates(city="shanghai", now=0.0)
    Zc = cands.features
    rng = np.random.default_rng(seed + 1)
    # Same rate model as the array workload, on the engine's own x and z (scaled to unit rows).
    Zs = Zc / np.linalg.norm(Zc, axis=1, keepdims=True)
    W = rng.normal(size=(D, Zs.shape[1])) * 0.8
    xs = x_all / np.sqrt(D)
    rates = true_rates(xs, Zs, W)
    records = {name: t.set_index("user_id").to_dict(orient="index") for name, t in tables.items()}
    ids = tables["knowledge"]["user_id"].tolist()
    profiles = [{name: records[name][uid] for name in records} for uid in ids]
    return EngineCase(
        schema,
        tables,
        catalog,
        profiles,
        rates,
        {b: i for i, b in enumerate(cands.ids)},
        rng.integers(n_users, size=rounds),
        rng.random(rounds),
    )


def run_engine(case: EngineCase, n: int, policy: Any, seed: int) -> tuple[float, list[int], float]:
    """Inline profile -> decide -> click report -> window closes -> update; clock injected:
    one second per round and a 20-second attribution window, so decisions learn 20 rounds
    later, inside ``decide``'s own ``advance``."""
    now = [0.0]
    counter = iter(range(10**9))
    engine = Engine(
        case.schema.fit(case.tables),
        case.catalog,
        policy,
        RewardSpec(click=1.0, window=20.0),
        clock=lambda: now[0],
        id_factory=lambda: f"d{next(counter)}",
    )
    profiles, rates, col, users, coins = (
        case.profiles,
        case.rates,
        case.bundle_col,
        case.users,
        case.coins,
    )
    lat: list[int] = []
    got = 0.0
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for t in range(n):
        now[0] = float(t)
        u = users[t]
        c0 = clock()
        d = engine.decide(profile=profiles[u])
        lat.append(clock() - c0)
        rate = rates[u, col[d.bundle_id]]
        if coins[t] < rate:
            engine.report(d.decision_id, "click")
        got += rate
    engine.flush(float(n + 1))
    elapsed = time.perf_counter() - t0
    oracle = float(rates[users[:n]].max(axis=1).mean())
    return n / elapsed, lat, got / n / oracle


# -- batch scoring ------------------------------------------------------------------------------
def run_score_batch(wl: Workload, policy: Any, n_users: int) -> float:
    X = wl.X[:n_users]
    t0 = time.perf_counter()
    S = policy.score_batch(X, wl.arms, wl.Z)
    dt = time.perf_counter() - t0
    assert S.shape == (n_users, K)
    return float(S.size / dt)


def run_engine_score(case: EngineCase, policy: Any) -> float:
    engine = Engine(case.schema.fit(case.tables), case.catalog, policy, clock=lambda: 0.0)
    t0 = time.perf_counter()
    frame = engine.score(case.tables)
    dt = time.perf_counter() - t0
    return frame.size / dt


def _trained(make: Callable[[], Any], wl: Workload, n: int) -> Any:
    pol = make()
    for t in range(n):
        c = pol.choose(wl.X[t], wl.arms, wl.Z)
        a = c.index
        pol.update(wl.X[t], wl.arms[a], wl.Z[a], float(wl.coins[t] < wl.rates[t, a]), c.propensity)
    return pol


# -- output -------------------------------------------------------------------------------------
def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def _print_table(results: list[Result], refs: dict[str, float]) -> None:
    head = (
        f"{'section':<8} {'implementation':<44} {'rounds':>7} {'rate':>12} {'unit':<9} "
        f"{'p50 us':>7} {'p99 us':>7} {'oracle %':>8}  ratios"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        p50 = p99 = "-"
        if r.choose_us is not None:
            p50 = f"{np.percentile(r.choose_us, 50):.0f}"
            p99 = f"{np.percentile(r.choose_us, 99):.0f}"
        share = "-" if r.share is None else f"{100 * r.share:.1f}"
        ratios = "  ".join(
            f"{r.rate / v:.2f}x {k}" for k, v in refs.items() if v > 0 and r.unit == "rounds/s"
        )
        if r.section in ("batch",):
            ratios = ""
        print(
            f"{r.section:<8} {r.name:<44} {r.rounds:>7} {_fmt_rate(r.rate):>12} {r.unit:<9} "
            f"{p50:>7} {p99:>7} {share:>8}  {ratios}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="rounds of the fast loops")
    parser.add_argument("--quick", action="store_true", help="small run (smoke test, ~20 s)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the fast loops (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peers", action="store_true", help="skip MABWiser and raw VW")
    args = parser.parse_args(argv)
    rounds = 2_000 if args.quick else args.rounds
    repeat = 1 if args.quick else args.repeat
    if rounds < 200 or repeat < 1:
        parser.error("--rounds must be >= 200 and --repeat >= 1")
    n_vw = min(rounds, 1_000 if args.quick else 5_000)
    n_vw_naive = min(rounds, 500 if args.quick else 2_000)
    n_mab_batch = rounds
    n_mab_single = min(rounds, 200 if args.quick else 500)
    n_batch_users = 20_000 if args.quick else 200_000

    with _one_blas_thread() as blas_note:
        # Compile (or load the cached) numba kernel of the TS propensity outside the timings.
        thompson.prob_max_normal(np.zeros(3), np.ones(3), 0)
        kernel = kernels.compiled
        load_before = os.getloadavg()
        print(
            f"bandit-engine bench_engine: python {platform.python_version()}, numpy "
            f"{np.__version__}, {platform.machine()}, {os.cpu_count()} cpus, BLAS: 1 thread "
            f"({blas_note}); LinearTS propensities: "
            f"{'numba kernel' if kernel else 'numpy (numba not installed)'}"
        )
        print(
            f"workload: d={D} context features, k={K} bundles (p={P} features), rates in "
            f"[2%, 10%], {rounds} rounds, seed {args.seed}, median of {repeat} repeat(s); load "
            f"average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        )
        wl = make_workload(max(rounds, n_batch_users), args.seed)
        print(
            f"true mean click rate: oracle {wl.oracle:.4f}, uniform random "
            f"{wl.rates.mean():.4f} ({100 * wl.rates.mean() / wl.oracle:.1f}% of oracle)\n"
        )
        results: list[Result] = []

        def repeated(section: str, name: str, n: int, fn: Callable[[], Any]) -> Result:
            res = Result(section, name, n)
            for _ in range(repeat):
                out = fn()
                res.rates.append(out[0])
            if len(out) == 3:
                res.choose_us = _latencies(out[1])
            res.share = wl.share(out[-1])
            results.append(res)
            return res

        ref = repeated(
            "loop",
            "plain numpy LinUCB (reference)",
            rounds,
            lambda: run_numpy_reference(wl, rounds),
        )
        repeated(
            "loop",
            f"bandit-engine LinUCB (alpha={ALPHA})",
            rounds,
            lambda: run_policy(wl, rounds, lambda: LinUCB(alpha=ALPHA, l2=L2, seed=args.seed)),
        )
        repeated(
            "loop",
            f"bandit-engine LinearTS disjoint (v={TS_V})",
            rounds,
            lambda: run_policy(wl, rounds, lambda: LinearTS(v=TS_V, l2=L2, seed=args.seed)),
        )
        if kernel:
            kernels.load(numba=False)
            try:
                repeated(
                    "loop",
                    "  the same, numpy propensities (no numba)",
                    rounds,
                    lambda: run_policy(wl, rounds, lambda: LinearTS(v=TS_V, l2=L2, seed=args.seed)),
                )
            finally:
                kernels.load()
        refs = {"numpy": ref.rate}
        peers = not args.no_peers
        if peers:
            try:
                import mabwiser  # noqa: F401
            except ImportError:
                print("MABWiser is not installed (pip install -e '.[bench]'): peers skipped\n")
                peers = False
        if peers:
            for batch, n in ((1, n_mab_single), (100, n_mab_batch)):
                res = Result("loop", f"MABWiser LinUCB, batches of {batch}", n)
                rate, chosen = run_mabwiser(wl, n, batch, args.seed)
                res.rates.append(rate)
                res.share = wl.share(chosen)
                results.append(res)
                refs[f"mabwiser/{batch}"] = rate

        # Vowpal Wabbit: the same command line for the raw loops and the adapter.
        from bandit_engine.policies.vw import VWPolicy

        vw_args = VWPolicy(exploration="epsilon", epsilon=0.05, seed=args.seed).vw_args
        vw_refs: dict[str, float] = {}
        if peers:
            res = Result("vw", "raw VW text interface (predict/learn lines)", n_vw_naive)
            rate, chosen = run_vw_raw_naive(wl, n_vw_naive, vw_args, args.seed)
            res.rates.append(rate)
            res.share = wl.share(chosen)
            results.append(res)
            vw_refs["raw-text"] = rate
            res = repeated(
                "vw",
                "raw VW careful (cached, _parse, *_multi)",
                n_vw,
                lambda: run_vw_raw_fast(wl, n_vw, vw_args, args.seed),
            )
            vw_refs["raw-careful"] = res.rate

        def vw_adapter() -> tuple[float, list[int], np.ndarray]:
            pol = VWPolicy(exploration="epsilon", epsilon=0.05, seed=args.seed)
            try:
                return run_policy(wl, n_vw, lambda: pol)
            finally:
                pol.close()

        vw_res = repeated("vw", "bandit-engine VWPolicy (epsilon=0.05)", n_vw, vw_adapter)

        # The full engine path.
        case = make_engine_case(rounds, 5_000, args.seed)
        for name, make in (
            (f"Engine + LinUCB (alpha={ALPHA})", lambda: LinUCB(alpha=ALPHA, seed=args.seed)),
            (f"Engine + LinearTS (v={TS_V})", lambda: LinearTS(v=TS_V, seed=args.seed)),
        ):
            res = Result("engine", name, rounds)
            for _ in range(repeat):
                rate, lat, share = run_engine(case, rounds, make(), args.seed)
                res.rates.append(rate)
            res.choose_us = _latencies(lat)
            res.share = share
            results.append(res)

        # Batch scoring (deterministic scores of trained policies).
        linucb = _trained(lambda: LinUCB(alpha=ALPHA, seed=args.seed), wl, min(rounds, 5_000))
        res = Result("batch", f"LinUCB.score_batch ({n_batch_users} users x {K})", n_batch_users)
        res.unit = "scores/s"
        for _ in range(repeat):
            res.rates.append(run_score_batch(wl, linucb, n_batch_users))
        results.append(res)
        res = Result("batch", f"Engine.score ({len(case.profiles)} users x {K}, DataFrame)", 0)
        res.rounds = len(case.profiles)
        res.unit = "scores/s"
        for _ in range(repeat):
            res.rates.append(run_engine_score(case, LinUCB(alpha=ALPHA, seed=args.seed)))
        results.append(res)

        _print_table([r for r in results if r.section in ("loop", "engine", "batch")], refs)
        print()
        _print_table([r for r in results if r.section == "vw"], vw_refs)
        load_after = os.getloadavg()
    print(
        f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
        f"rates are medians of {repeat} repeat(s) except MABWiser and the raw VW text loop (one "
        "run each); p50/p99 are per-call latencies of choose (Engine.decide for the engine rows) "
        "in the last repeat."
    )
    if vw_refs:
        print(
            "VW adapter vs raw: "
            + ", ".join(f"{vw_res.rate / v:.2f}x {k}" for k, v in vw_refs.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
