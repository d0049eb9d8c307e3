"""What reading the shared live-behaviour row costs a decision server (issue 12, item 1).

A :class:`~bandit_engine.service.decider.DecisionService` over the demo engine (``pair_ucb``, the
behaviour block on) on a SQLite log with a row for each of 2,000 users in ``user_behaviour`` (as a
learner writes them) decides for those users with the shared rows read before every decision
(``SharedBehaviour(ttl=0)``: no cache, the worst case) and, alternating, with the version's own
copy (no read); it also times the read alone (``sync_behaviour``). Each decision commits at once
(no group commit), so the p99 is SQLite's.

Usage::

    python benchmarks/bench_shared_behaviour.py [--decisions 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from bandit_engine.demo import demo_engine
    from bandit_engine.service.decider import DecisionService, SharedBehaviour
    from bandit_engine.store import open_log

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--decisions", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    key = b"bench-shared-behaviour-key-0123456789"
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "b.sqlite")
        log = open_log(db, hmac_key=key)
        reads = open_log(db, hmac_key=key, read_only=True)
        svc = DecisionService(demo_engine(seed=0, policy="pair_ucb"), log, version=0, reads=reads)
        b = svc.engine.behaviour
        assert b is not None
        users = [f"U{i:06d}" for i in range(1, 2001)]
        rows = []
        for u in users:
            k = b.key(u)
            b.observe_decision(k, 0, time.time())
            data = b.export_row(k)
            assert data is not None
            rows.append((k.hex(), b.width, data))
        log.put_behaviour(rows, seq=0)
        shared = SharedBehaviour(reads, ttl=0.0)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        for rnd in range(args.rounds):
            for mode in ("shared row read", "version copy"):
                svc.behaviour = shared if mode == "shared row read" else None
                lat = []
                for i in range(args.decisions):
                    t = time.perf_counter()
                    svc.decide(users[(i * 7) % len(users)])
                    lat.append(time.perf_counter() - t)
                a = np.asarray(lat) * 1e3
                line = f"round {rnd} {mode}: decide p50 {np.percentile(a, 50):.3f} ms, p99 "
                line += f"{np.percentile(a, 99):.2f} ms"
                if svc.behaviour is not None:
                    sync = []
                    for i in range(args.decisions):
                        t = time.perf_counter()
                        svc.sync_behaviour(users[i % len(users)])
                        sync.append(time.perf_counter() - t)
                    line += f"; the read alone p50 {np.percentile(sync, 50) * 1e3:.3f} ms"
                    line += f", p99 {np.percentile(sync, 99) * 1e3:.3f} ms"
                print(line)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        reads.close()
        log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
