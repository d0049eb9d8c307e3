"""What pauses a single-process server (``serve-policy --role all``): measured, not guessed.

Builds the demo engine, freezes the collector as the server's lifespan does (``gc.collect();
gc.freeze()``), then makes ``--decisions`` decisions that stay pending (the demo's window is one
day, so in ``benchmarks/bench_server.py``'s 60 s every decision is still pending), timing each
one and every full (generation 2) garbage collection that happens meanwhile. Then it times
``os.fork()`` in the parent (what a background checkpoint costs the serving loop) and
``Engine.to_state`` (what a checkpoint without fork costs).

Usage::

    python benchmarks/probe_server_tail.py --decisions 60000
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import time
from typing import Any

import numpy as np

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from bandit_engine.demo import demo_engine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--decisions", type=int, default=60_000)
    p.add_argument("--policy", default="linucb")
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    engine = demo_engine(seed=0, policy=args.policy)
    engine.auto_advance = False
    gc.collect()
    gc.freeze()
    users = [f"U{i:06d}" for i in range(1, 3001)]
    full: list[float] = []
    started = [0.0]

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif info["generation"] == 2:
            full.append((time.perf_counter() - started[0]) * 1e3)

    gc.callbacks.append(watch)
    lat = []
    for k in range(args.decisions):
        t = time.perf_counter()
        with contextlib.suppress(Exception):  # a user with no eligible bundle now
            engine.decide(users[k % len(users)])
        lat.append(time.perf_counter() - t)
    gc.callbacks.remove(watch)
    a = np.asarray(lat) * 1e3
    print(
        f"{len(engine.attribution)} pending decisions; decide p50 {np.percentile(a, 50):.2f} ms, "
        f"p99 {np.percentile(a, 99):.2f} ms, max {a.max():.1f} ms"
    )
    print(f"full collections meanwhile: {len(full)}, each (ms): {[round(x, 1) for x in full]}")
    print(f"tracked objects now (after the freeze): {len(gc.get_objects())}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pauses = []
    for _ in range(5):
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pauses.append((time.perf_counter() - t) * 1e3)
        os.waitpid(pid, 0)
    print(f"fork() in the parent at {rss:.0f} MB RSS (ms): {[round(x, 1) for x in pauses]}")
    t = time.perf_counter()
    engine.to_state()
    print(f"Engine.to_state: {(time.perf_counter() - t) * 1e3:.0f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
