"""Speed of ``bandit simulate``: one LinUCB engine, 100 candidate bundles, 64 context features.

    python benchmarks/bench_simulate.py [--rounds 1000000] [--baseline-rounds 25000]
        [--precision float32|float64] [--profile]

Part 1 (the issue's target: 1,000,000 decisions in <= 120 s on one core). A world with one city
and 10 deals x 10 courses, every deal valid for the whole run, so every decision has exactly 100
candidates; the demo profile schema with its two tag fields hashed into 21 and 20 buckets, so
the context vector has exactly 64 features. The policy is LinUCB with ``precision="float32"``
(``--precision float64`` for the default): its confidence widths are first computed from float32
copies of the packed ``A^{-1}`` triangles, and the arms that could tie with the best are
rescored in float64, so the choices and propensities are those of float64 LinUCB; only the
reported scores of arms that cannot win carry float32 rounding. One LinUCB engine is driven by
the simulator's own
loop (:func:`bandit_engine.simulation.runner.run_stream`): engine.decide, world true rates for
the oracle, shared uniforms for clicks and orders, engine.report, attribution windows closing
and the policy learning. Nothing is skipped: "world simulation included". The time is split
into the engine's own calls (decide / report / learning), the world's true-rate computations and
the rest (the runner's bookkeeping).

Part 2: decisions per second of every engine of the baseline scenario (``bandit simulate`` with
no arguments), one seed.

``--profile`` adds a cProfile of 20,000 decisions of part 1 (top functions by own time).
"""

from __future__ import annotations

import os

# "One core": single-threaded BLAS; must happen before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bandit_engine.demo import build_engine, demo_schema  # noqa: E402
from bandit_engine.features import ProfileSchema, Tags  # noqa: E402
from bandit_engine.policies.registry import make_policy  # noqa: E402
from bandit_engine.rewards import RewardSpec  # noqa: E402
from bandit_engine.simulation.arms import arm_specs  # noqa: E402
from bandit_engine.simulation.runner import run_seed, run_stream  # noqa: E402
from bandit_engine.simulation.scenario import OrderSettings, default_scenario  # noqa: E402
from bandit_engine.simulation.streams import Stream, draw_outcomes  # noqa: E402
from bandit_engine.simulation.summary import timings  # noqa: E402
from bandit_engine.simulation.traces import SimulationResult  # noqa: E402
from bandit_engine.simulation.world import World  # noqa: E402
from bandit_engine.simulation.world_config import WorldConfig  # noqa: E402

__all__ = ["bench_schema", "bench_world", "main"]

TARGET_SECONDS = 120.0
CONTEXT_FEATURES = 64
CANDIDATES = 100


def bench_schema() -> ProfileSchema:
    """The demo schema with the tag fields hashed so that one city gives 64 context features."""
    platforms = {}
    for name, fields in demo_schema().platforms.items():
        out = []
        for f in fields:
            if isinstance(f, Tags):
                buckets = 21 if f.name == "topics" else 20
                f = Tags(f.name, max_vocabulary=1, hash_buckets=buckets)
            out.append(f)
        platforms[name] = out
    return ProfileSchema(platforms, key="user_id")


def bench_world(seed: int = 0) -> World:
    """One city, 10 deals x 10 courses valid for the whole run: 100 candidates per decision."""
    config = WorldConfig(
        n_users=5000,
        n_cities=1,
        n_deals=10,
        n_courses=10,
        deal_min_days=400.0,
        deal_max_days=400.0,
        arrivals_per_day=200_000.0,
    )
    return World.generate(config, seed=seed)


def _peak_rss_mb() -> float:
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def part1(rounds: int, seed: int = 0, precision: str = "float32") -> dict[str, Any]:
    """Run ``rounds`` decisions of one LinUCB engine over 100 candidates x 64 features."""
    t0 = time.perf_counter()
    world = bench_world(seed)
    rng = np.random.default_rng(seed)
    times, users = world.arrivals(rounds, rng)
    draws = draw_outcomes(rounds, rng, OrderSettings(delay="none"))
    rewards = RewardSpec(click=1.0, order=2.0, value_weight=0.01, window=600.0)
    engine = build_engine(
        world,
        make_policy("linucb", alpha=0.05, precision=precision, seed=seed),
        schema=bench_schema(),
        rewards=rewards,
        id_factory=_ids(),
    )
    engine.model_id = "bench"
    setup = time.perf_counter() - t0
    assert engine.features.n_features == CONTEXT_FEATURES, engine.features.n_features
    t1 = time.perf_counter()
    trace = run_stream(
        world, Stream(times, users), draws, [engine], rewards=rewards, labels=["linucb"]
    )
    elapsed = time.perf_counter() - t1
    assert int(trace.n_candidates.min()) == int(trace.n_candidates.max()) == CANDIDATES
    tr = trace.arms["linucb"]
    return {
        "rounds": rounds,
        "setup_seconds": setup,
        "seconds": elapsed,
        "engine_seconds": tr.seconds,
        "world_seconds": trace.world_seconds,
        "mean_expected_reward": float(tr.expected.mean()),
        "oracle": float(trace.oracle.mean()),
        "ctr": float(tr.click.mean()),
    }


def _ids() -> Any:
    counter = iter(range(1, 1 << 62))

    def next_id() -> str:
        return f"b-{next(counter):09d}"

    return next_id


def profile_part1(rounds: int = 20_000, precision: str = "float32") -> str:
    prof = cProfile.Profile()
    prof.enable()
    part1(rounds, precision=precision)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def part2(rounds: int) -> dict[str, Any]:
    """Decisions per second of every engine of the baseline scenario (one seed)."""
    sc = default_scenario().with_overrides(rounds=rounds, seeds=1)
    arms = arm_specs(sc.policies, sc.controls)
    t0 = time.perf_counter()
    trace = run_seed(sc, sc.run.seed, arms=arms)
    wall = time.perf_counter() - t0
    out = timings(SimulationResult(sc, arms, [trace]))
    out["wall_with_setup_seconds"] = round(wall, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1_000_000)
    ap.add_argument("--baseline-rounds", type=int, default=25_000)
    ap.add_argument("--precision", choices=["float32", "float64"], default="float32")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"load average before: {_load()}")
    r = part1(args.rounds, precision=args.precision)
    rate = r["rounds"] / r["seconds"]
    other = r["seconds"] - r["engine_seconds"] - r["world_seconds"]
    print(
        f"\n[1] LinUCB (precision={args.precision}), {CANDIDATES} candidates x "
        f"{CONTEXT_FEATURES} context features, {r['rounds']:,} decisions (world included)"
    )
    if args.precision == "float32":
        print(
            "    float32 widths, float64 rescoring of the arms that could tie with the best: "
            "float64 LinUCB's choices"
        )
    print(f"    setup (world, schema fit, engine): {r['setup_seconds']:.1f} s")
    print(f"    run: {r['seconds']:.1f} s = {rate:,.0f} decisions/s")
    per = 1e6 / r["rounds"]
    for name, sec in (
        ("engine (decide, report, learn)", r["engine_seconds"]),
        ("world (true rates, oracle)", r["world_seconds"]),
        ("runner bookkeeping", other),
    ):
        print(f"      {name:32s} {sec:7.1f} s  {sec * per:7.1f} us/decision")
    verdict = "PASS" if r["seconds"] <= TARGET_SECONDS * r["rounds"] / 1_000_000 else "FAIL"
    projected = r["seconds"] * 1_000_000 / r["rounds"]
    print(
        f"    1,000,000 decisions: {projected:.0f} s (target <= {TARGET_SECONDS:.0f} s): {verdict}"
    )
    print(
        f"    mean expected reward {r['mean_expected_reward']:.4f}, oracle {r['oracle']:.4f}, "
        f"CTR {r['ctr'] * 100:.2f}%"
    )
    print(f"    peak RSS {_peak_rss_mb():.0f} MB")
    t = part2(args.baseline_rounds)
    print(f"\n[2] baseline scenario, 1 seed, {t['rounds']:,} decisions per engine")
    print(
        f"    whole run {t['wall_seconds']:.1f} s ({t['rounds_per_second']:,.0f} rounds/s with "
        f"every engine), world {t['world_seconds']:.2f} s"
    )
    for label, e in t["engines"].items():
        print(f"      {label:20s} {e['decisions_per_second']:>9,.0f} decisions/s")
    print(f"load average after: {_load()}")
    if args.profile:
        print("\n[profile] 20,000 decisions of [1], top functions by own time")
        print(profile_part1(precision=args.precision))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
