"""Speed of IPS, SNIPS and DR over a large synthetic log, chunk by chunk.

    python benchmarks/bench_ope.py [--rows 10000000] [--actions 80] [--chunk 500000] [--seed 0]

Each chunk is generated with a seeded generator (uniform logging over K actions, a random
evaluated policy ``action_dist`` and random estimated rewards, both (chunk, K) float64), then fed
to the streaming accumulators; only one chunk is alive at a time, so memory is bounded by the
chunk size, not the log size. Generation time is measured separately and excluded from the
estimator timings. Each estimator's time includes its input validation (row sums of
``action_dist``, ranges of ``pscore`` and ``action``), because a real run pays it too.

IPS and SNIPS are timed twice: from the full (n, K) ``action_dist`` and from ``action_prob``, the
(n,) probability of the logged action, which is how very large logs should be fed to them.

Peer: when Open Bandit Pipeline (``obp``) can be imported, its IPS, SNIPS and DR estimators and
bandit-engine's in-memory ``ips``, ``snips`` and ``dr`` run on the same ``--peer-rows`` rows (OBP
needs the whole (n, K, 1) array in memory, so not on the full log), and the ratio and the agreement
of the point estimates are printed. obp is not a dependency (it pins old numpy / scikit-learn and
needs torch); benchmarks/README.md says how the peer run was set up.
"""

from __future__ import annotations

import os

# "One core": keep BLAS (used for row sums) single-threaded; must happen before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bandit_engine.evaluation import (  # noqa: E402
    DRAccumulator,
    IPSAccumulator,
    SNIPSAccumulator,
    dr,
    ips,
    snips,
)
from bandit_engine.records import Estimate  # noqa: E402

__all__ = ["main"]


def _chunk(rng: np.random.Generator, rows: int, k: int) -> dict[str, np.ndarray]:
    action = rng.integers(k, size=rows)
    dist = rng.random((rows, k))
    dist /= dist.sum(axis=1, keepdims=True)
    qhat = rng.random((rows, k))
    reward = (rng.random(rows) < qhat[np.arange(rows), action]).astype(np.float64)
    return {
        "reward": reward,
        "action": action,
        "pscore": np.full(rows, 1.0 / k),
        "action_dist": dist,
        "estimated_rewards": qhat,
    }


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _peer(rows: int, k: int, seed: int) -> None:
    """OBP and bandit-engine on the same in-memory rows (best of 3 each), if obp is importable."""
    try:
        from obp.ope import (  # type: ignore[import-not-found]
            DoublyRobust,
            InverseProbabilityWeighting,
            SelfNormalizedInverseProbabilityWeighting,
        )
    except ImportError:
        print(
            "peer comparison: Open Bandit Pipeline (obp) is not importable here (it is not a "
            "dependency); see benchmarks/README.md for the peer set-up."
        )
        return
    import obp

    c = _chunk(np.random.default_rng(seed + 1), rows, k)
    dist3 = c["action_dist"][:, :, None]
    q3 = c["estimated_rewards"][:, :, None]
    pos = np.zeros(rows, dtype=int)
    common = {"reward": c["reward"], "action": c["action"], "pscore": c["pscore"]}
    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "ips",
            lambda: InverseProbabilityWeighting().estimate_policy_value(
                **common, action_dist=dist3, position=pos
            ),
            lambda: ips(**common, action_dist=c["action_dist"]).value,
        ),
        (
            "snips",
            lambda: SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(
                **common, action_dist=dist3, position=pos
            ),
            lambda: snips(**common, action_dist=c["action_dist"]).value,
        ),
        (
            "dr",
            lambda: DoublyRobust().estimate_policy_value(
                **common, action_dist=dist3, estimated_rewards_by_reg_model=q3, position=pos
            ),
            lambda: (
                dr(
                    **common, action_dist=c["action_dist"], estimated_rewards=c["estimated_rewards"]
                ).value
            ),
        ),
    ]
    print(
        f"peer comparison on {rows:,} in-memory rows x {k} actions, best of 3: Open Bandit "
        f"Pipeline {obp.__version__} (point estimate only) vs bandit-engine (point estimate, "
        "95% interval and weight diagnostics)"
    )
    for name, theirs, ours in pairs:
        t_obp, v_obp = _timed(theirs)
        t_ours, v_ours = _timed(ours)
        print(
            f"  {name:6s} obp {t_obp:7.3f} s   bandit-engine {t_ours:7.3f} s   "
            f"ratio {t_obp / t_ours:5.2f}x   |value difference| {abs(v_obp - v_ours):.1e}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--actions", type=int, default=80)
    parser.add_argument("--chunk", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.actions < 1 or args.chunk < 1:
        parser.error("--rows, --actions and --chunk must be >= 1")

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    accumulators: dict[str, Any] = {
        "ips (action_dist)": IPSAccumulator(),
        "ips (action_prob)": IPSAccumulator(),
        "snips (action_dist)": SNIPSAccumulator(),
        "snips (action_prob)": SNIPSAccumulator(),
        "dr (action_dist + estimated_rewards)": DRAccumulator(),
    }
    feeds: dict[str, Callable[[dict[str, np.ndarray], np.ndarray], dict[str, np.ndarray]]] = {
        "ips (action_dist)": lambda c, _p: {
            k: c[k] for k in ("reward", "action", "pscore", "action_dist")
        },
        "ips (action_prob)": lambda c, p: {
            "reward": c["reward"],
            "action": c["action"],
            "pscore": c["pscore"],
            "action_prob": p,
        },
        "dr (action_dist + estimated_rewards)": lambda c, _p: c,
    }
    feeds["snips (action_dist)"] = feeds["ips (action_dist)"]
    feeds["snips (action_prob)"] = feeds["ips (action_prob)"]
    seconds = dict.fromkeys(accumulators, 0.0)
    gen_seconds = 0.0
    done = 0
    while done < args.rows:
        rows = min(args.chunk, args.rows - done)
        t0 = time.perf_counter()
        chunk = _chunk(rng, rows, args.actions)
        # The probability of the logged action is what a logging system would store per row.
        prob = chunk["action_dist"][np.arange(rows), chunk["action"]]
        gen_seconds += time.perf_counter() - t0
        for name, acc in accumulators.items():
            feed = feeds[name](chunk, prob)
            t0 = time.perf_counter()
            acc.update(**feed)
            seconds[name] += time.perf_counter() - t0
        done += rows
        del chunk, prob

    chunk_mb = min(args.chunk, args.rows) * args.actions * 8 / 2**20
    print(
        f"bench_ope: {args.rows:,} rows x {args.actions} actions, chunks of {args.chunk:,} rows "
        f"(one (chunk, K) float64 array = {chunk_mb:.0f} MB), seed {args.seed}"
    )
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"one process, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
        f"load average before start {load_before:.1f}"
    )
    print(f"data generation (excluded below): {gen_seconds:8.2f} s")
    print(f"{'estimator':40s} {'seconds':>9s} {'rows/s':>14s} {'value':>10s} {'95% CI':>23s}")
    for name, acc in accumulators.items():
        est: Estimate = acc.result()
        rate = args.rows / seconds[name] if seconds[name] > 0 else float("inf")
        print(
            f"{name:40s} {seconds[name]:9.2f} {rate:14,.0f} {est.value:10.5f} "
            f"[{est.ci_low:.5f}, {est.ci_high:.5f}]"
        )
    both = seconds["ips (action_prob)"] + seconds["snips (action_prob)"]
    both += seconds["dr (action_dist + estimated_rewards)"]
    print(f"ips + snips (action_prob) + dr total: {both:.2f} s")
    print(f"peak resident memory (whole process, generation included): {_peak_rss_mb():.0f} MB")
    _peer(args.peer_rows, args.actions, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
