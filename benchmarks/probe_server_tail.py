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
    p.add_argument("--slow-ms", type=float, default=20.0, help="what counts as a slow decision")
    p.add_argument(
        "--warm-up",
        action="store_true",
        help="run bandit_engine.service.warmup.warm_up first, as the servers do at start",
    )
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    engine = demo_engine(seed=0, policy=args.policy)
    engine.auto_advance = False
    if args.warm_up:
        from bandit_engine.service.warmup import warm_up

        print(f"warm-up: {warm_up(engine) * 1e3:.0f} ms")
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
    # every collection of any generation, as (start, end) on the perf_counter clock
    spans: list[tuple[float, float, int]] = []
    opened = [0.0]

    def every(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            opened[0] = time.perf_counter()
        else:
            spans.append((opened[0], time.perf_counter(), int(info["generation"])))

    gc.callbacks.append(every)
    # the control: a fixed piece of numpy work of about a decision's size, timed the same way
    # between decisions; if it stalls as long as the worst decisions, the process was not
    # running (the machine's other jobs), whatever decide does
    ctl_a = np.random.default_rng(0).standard_normal((60, 60))
    lat, cpu, ctl = [], [], []
    slow: list[tuple[int, float, float, int, int, int, float]] = []
    for k in range(args.decisions):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        c0 = time.thread_time()
        t = time.perf_counter()
        with contextlib.suppress(Exception):  # a user with no eligible bundle now
            engine.decide(users[k % len(users)])
        t1 = time.perf_counter()
        c1 = time.thread_time()
        lat.append(t1 - t)
        cpu.append(c1 - c0)
        if t1 - t > args.slow_ms / 1e3:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            in_gc = sum(min(e, t1) - max(s, t) for s, e, _ in spans if e > t and s < t1)
            slow.append(
                (
                    k,
                    (t1 - t) * 1e3,
                    (c1 - c0) * 1e3,
                    r1.ru_nivcsw - r0.ru_nivcsw,
                    r1.ru_nvcsw - r0.ru_nvcsw,
                    r1.ru_majflt - r0.ru_majflt + r1.ru_minflt - r0.ru_minflt,
                    in_gc * 1e3,
                )
            )
        t = time.perf_counter()
        ctl_a @ ctl_a
        ctl.append(time.perf_counter() - t)
    gc.callbacks.remove(watch)
    gc.callbacks.remove(every)
    a = np.asarray(lat) * 1e3
    c = np.asarray(cpu) * 1e3
    b = np.asarray(ctl) * 1e3
    print(
        f"{len(engine.attribution)} pending decisions; decide p50 {np.percentile(a, 50):.2f} ms, "
        f"p99 {np.percentile(a, 99):.2f} ms, max {a.max():.1f} ms (CPU of the slowest "
        f"{c[int(a.argmax())]:.1f} ms); first decision {a[0]:.1f} ms"
    )
    print(
        f"control (60x60 matmul between decisions): p50 {np.percentile(b, 50):.3f} ms, "
        f"p99 {np.percentile(b, 99):.2f} ms, max {b.max():.1f} ms, "
        f"{int((b > args.slow_ms).sum())} over {args.slow_ms:g} ms"
    )
    print(f"full collections meanwhile: {len(full)}, each (ms): {[round(x, 1) for x in full]}")
    print(
        f"decisions over {args.slow_ms:g} ms: {len(slow)} (k, wall ms, thread CPU ms, involuntary "
        "/ voluntary context switches, page faults, ms inside a collection):"
    )
    for row in sorted(slow, key=lambda r: -r[1])[:15]:
        print("  ", row[0], *(round(v, 1) if isinstance(v, float) else v for v in row[1:]))
    off_cpu = sum(r[1] - r[2] for r in slow)
    in_gc = sum(r[6] for r in slow)
    print(
        f"time over the slow decisions: {sum(r[1] for r in slow):.0f} ms wall, of it "
        f"{off_cpu:.0f} ms not on this thread's CPU (descheduled or blocked) and "
        f"{in_gc:.0f} ms inside collections"
    )
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
