"""CPU per session of the serving worker without HTTP: the single process's worker against a
decision server's (issue 12's split), on SQLite, at a fixed open-loop rate.

Each configuration is the real server object (``open_server`` / ``open_decision_server``, the
same warm-up, collector freeze and worker as ``serve-policy``) driven on uvloop by the jobs the
HTTP routes run: a session is one decision and one click event for it, started every
``1 / rate`` seconds. What is measured is the process's CPU (``time.process_time``: the loop and
the helper threads) per session, the commits (``bandit_commits_total``) per session, and the
in-process latency of the decision (from its scheduled start to its commit). No learner runs (a
decision server finds no newer version), so this is the decision path only; the learner and the
version loads are measured by ``bench_server.py --workers 2`` (its per-process lines).

Rounds alternate between the configurations; medians are printed. The HTTP stack is left out
on purpose: it costs both configurations the same per request.

Usage::

    python benchmarks/probe_split_cpu.py --rate 600 --seconds 8 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bandit_engine.server.app import open_server
from bandit_engine.server.auth import Secret
from bandit_engine.server.roles import open_decision_server
from bandit_engine.server.settings import ServerSettings

KEY = b"probe-hmac-key-0123456789abcdef!"


async def _drive(worker: Any, rate: float, seconds: float, users: list[str]) -> dict[str, float]:
    gc.collect()
    gc.freeze()
    worker.start()
    lat: list[float] = []
    errors = 0

    async def session(user: str, scheduled: float) -> None:
        nonlocal errors
        try:
            d = await worker.run(lambda s: s.decide(user))
            lat.append(time.perf_counter() - scheduled)
            await worker.run(lambda s: s.report(d.decision_id, "click"))
        except Exception:
            errors += 1

    # a short warm-up at the same rate, then the measured phase
    for length in (1.0, seconds):
        lat.clear()
        errors = 0
        commits0 = worker.metrics.value("bandit_commits_total")
        cpu0 = time.process_time()
        start = time.perf_counter()
        tasks = []
        n = int(rate * length)
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(session(users[i % len(users)], scheduled)))
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu0
        commits = worker.metrics.value("bandit_commits_total") - commits0
    await worker.stop(checkpoint=False)
    a = np.asarray(lat) * 1e3
    return {
        "us_per_session": cpu / n * 1e6,
        "commits_per_session": commits / n,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": float(errors),
    }


def run(kind: str, tmp: Path, tag: str, args: argparse.Namespace) -> dict[str, float]:
    import uvloop

    settings = ServerSettings(
        db=str(tmp / f"{kind}-{tag}.sqlite"),
        api_token=Secret(b"probe-token-0123456789abcdef"),
        demo_policy=args.policy,
        role="all" if kind == "single" else "decide",
        checkpoint_dir=str(tmp / f"cps-{tag}"),
    )
    opener = open_server if kind == "single" else open_decision_server
    app, log = opener(settings, hmac_key=KEY)
    worker = app.state.worker
    users = [f"U{i:06d}" for i in range(1, 2001)]
    ok = []
    for u in users:  # users that get a decision now (as bench_server.py picks them)
        try:
            worker.service.engine.policy_inputs(u)
            ok.append(u)
        except Exception:
            continue
        if len(ok) >= 500:
            break
    try:
        return uvloop.run(_drive(worker, args.rate, args.seconds, ok))
    finally:
        reader = getattr(app.state, "reader", None)
        if reader is not None:
            reader.close()
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=600.0, help="sessions per second")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--policy", default="linucb")
    p.add_argument("--only", choices=["single", "split"], default=None)
    args = p.parse_args(argv)
    kinds = [args.only] if args.only else ["single", "split"]
    out: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="probe-split-") as tmp:
        for r in range(args.rounds):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                res = run(kind, Path(tmp), str(r), args)
                out[kind].append(res)
                print(
                    f"round {r} {kind:>6}: {res['us_per_session']:5.0f} us/session CPU, "
                    f"{res['commits_per_session']:.3f} commits/session, decision p50 "
                    f"{res['p50_ms']:.2f} ms p99 {res['p99_ms']:.1f} ms, errors "
                    f"{int(res['errors'])}",
                    flush=True,
                )
    for kind, rs in out.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(
            f"median {kind:>6}: {med['us_per_session']:5.0f} us/session CPU, "
            f"{med['commits_per_session']:.3f} commits/session, decision p50 {med['p50_ms']:.2f} "
            f"ms, p99 {med['p99_ms']:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
