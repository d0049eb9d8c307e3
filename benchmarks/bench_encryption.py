"""What encryption at rest costs: decision latency and log size, with and without a key.

    python benchmarks/bench_encryption.py [--decisions 5000] [--rounds 3]

The demo engine (its default policy) behind a :class:`~bandit_engine.service.LoggedEngine`
with its profiles in the log, as ``bandit serve-policy`` runs it: every user's two profiles are
stored first (``upsert_profile``), then ``--decisions`` decisions (``LoggedEngine.decide``: the
engine's choice and the committed log row, one transaction each, ``synchronous=NORMAL``) with a
click on a third of them. The same run is made with and without ``BANDIT_ENCRYPTION_KEY``,
alternating ``--rounds`` times in one process so both see the same machine load. Reported:
decision latency p50 / p99 (the server adds HTTP on top of this) and the SQLite file size per
decision after the WAL is checkpointed into it (VACUUMed, so free pages do not count).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import secrets  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bandit_engine.demo import demo_engine  # noqa: E402
from bandit_engine.service import LoggedEngine  # noqa: E402
from bandit_engine.store import EventLog  # noqa: E402
from bandit_engine.store.crypto import ENV_KEY  # noqa: E402

HMAC = secrets.token_hex(32).encode()
T0 = 1_700_000_000.0


def run(folder: Path, n: int, encrypted: bool) -> tuple[np.ndarray, float, float]:
    if encrypted:
        os.environ[ENV_KEY] = secrets.token_hex(32)
    else:
        os.environ.pop(ENV_KEY, None)
    engine = demo_engine(seed=0, start_time=T0, clock=lambda: T0)
    profiles = engine.profiles
    users = [f"U{u:06d}" for u in range(1, 2001)]
    path = folder / f"{'enc' if encrypted else 'plain'}-{time.monotonic_ns()}.sqlite"
    rng = np.random.default_rng(0)
    lat = np.empty(n)
    with EventLog(path, hmac_key=HMAC, synchronous="NORMAL") as log:
        service = LoggedEngine(engine, log)
        for user in users:  # what the server keeps: every user's profiles, in the log
            for platform, fields in (profiles.get(user) or {}).items():
                if fields:
                    log.upsert_profile(user, platform, {k: _plain(v) for k, v in fields.items()})
        for i in range(n):
            user = users[int(rng.integers(len(users)))]
            t = T0 + i
            s = time.perf_counter()
            d = service.decide(user, now=t)
            lat[i] = time.perf_counter() - s
            if rng.random() < 0.33:
                service.report(d.decision_id, "click", at=t + 1)
    con = sqlite3.connect(path)
    con.execute("VACUUM")
    con.close()
    size = path.stat().st_size
    with sqlite3.connect(path) as con:
        prof = con.execute("SELECT sum(length(fields)) FROM profiles").fetchone()[0] or 0
    return lat, size / n, float(prof)


def _plain(v: object) -> object:
    """A profile value as JSON (pandas timestamps and numpy scalars as plain values)."""
    if hasattr(v, "isoformat"):
        return v.isoformat()  # type: ignore[union-attr]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list | tuple | np.ndarray):
        return [_plain(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out: dict[bool, list[tuple[np.ndarray, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for enc in (False, True):
                out[enc].append(run(Path(tmp), args.decisions, enc))
    print(f"{args.decisions} decisions x {args.rounds} rounds each, alternating")
    for enc in (False, True):
        lat = np.concatenate([r[0] for r in out[enc]]) * 1e3
        p99s = [np.percentile(r[0], 99) * 1e3 for r in out[enc]]
        size = np.mean([r[1] for r in out[enc]])
        prof = np.mean([r[2] for r in out[enc]])
        print(
            f"{'encrypted' if enc else 'plaintext':10s} decide p50 {np.percentile(lat, 50):.3f} ms"
            f"  p99 {np.percentile(lat, 99):.3f} ms (per round: "
            + ", ".join(f"{p:.3f}" for p in p99s)
            + f")  log {size:.0f} B/decision  profiles column {prof / 1024:.0f} KiB"
        )
    p = {e: np.percentile(np.concatenate([r[0] for r in out[e]]), 99) for e in (False, True)}
    s = {e: np.mean([r[1] for r in out[e]]) for e in (False, True)}
    print(f"p99 ratio {p[True] / p[False]:.3f}, log size ratio {s[True] / s[False]:.3f}")


if __name__ == "__main__":
    main()
