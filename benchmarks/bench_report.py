"""Speed of ``bandit report`` over a large SQLite event log, on one core.

    python benchmarks/bench_report.py [--decisions 10000000] [--users 1000000] [--days 30]
                                      [--db /tmp/bench_report.sqlite] [--keep]

The log is written straight into the store's schema (an :class:`~bandit_engine.store.EventLog`
creates the tables, then bulk ``executemany`` inserts in one transaction): decisions of
``--users`` pseudonymous users over ``--days`` days, 10% in a ``uniform`` holdout (by the same
bucketing as the server), 3 presence segments, 5 cities, 200 bundles; rewards already learned;
about 5% of decisions with a click and 1% with an order (events table). Generation is timed
apart and excluded. A log left by an earlier run with the same parameters is reused (``--keep``
keeps the file afterwards).

Wall and CPU seconds are both printed: on a machine shared with other jobs the wall time
includes waiting for the CPU, the CPU time is what one dedicated core would spend.

Timed, pinned to one CPU (``sched_setaffinity``) with single-threaded BLAS:

* ``report_from_log`` (what ``bandit report`` runs: read in pages, aggregate, intervals), split
  into reading the log and aggregating + reporting;
* the command itself, ``bandit report --db ... --json`` in a subprocess (import, open, print).

Peer: the same aggregation as one SQL ``GROUP BY`` per breakdown (the per-user sums, then the
per-cell sums, as nested queries) on the same file, timed for the overall and day breakdowns only.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bandit_engine.holdout import HoldoutGroup, HoldoutPlan  # noqa: E402
from bandit_engine.reporting import report_from_log  # noqa: E402
from bandit_engine.reporting.aggregate import aggregate  # noqa: E402
from bandit_engine.reporting.report import build_report, experiment_of  # noqa: E402
from bandit_engine.reporting.table import table_from_log  # noqa: E402
from bandit_engine.store import EventLog, open_log  # noqa: E402

KEY = b"bench-report-key-0123456789abcdef"
T0 = 1_764_547_200.0  # 2025-12-01 00:00 UTC


def generate(path: Path, n: int, n_users: int, days: int, seed: int) -> float:
    """Write the synthetic log in SQL (a recursive CTE: no Python per row); returns seconds.

    Per decision ``i``: user ``u = (i * 48271 + seed) mod users``; pseudonym: 16 hex digits of
    ``u * 2654435761`` padded to 64 characters; group ``uniform`` for the users with
    ``u * 7 mod 10 = 3`` (10% of users, sticky); presence and city from ``u``; bundle from
    ``i`` and ``u`` (200 bundles); a click for 5% of decisions by a multiplicative hash of
    ``i``, an order for a fifth of those (reward ``click + 2 * order``, learned)."""
    start = time.perf_counter()
    plan = HoldoutPlan((HoldoutGroup("uniform", 0.1, "uniform"),))
    with EventLog(path, hmac_key=KEY) as log:
        log.set_meta("holdout_plan", json.dumps(plan.to_dict(), sort_keys=True))
        log.set_meta(
            "event_types",
            json.dumps(
                {
                    "click": {"platform": None, "conversion": False},
                    "order": {"platform": "bundle", "conversion": True},
                }
            ),
        )
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("INSERT INTO candidate_sets (id, digest, ids) VALUES (1, 'bench', '[]')")
    x = np.zeros(4).tobytes()
    step = days * 86_400.0 / n
    con.execute(
        "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?),"
        " r AS (SELECT i, (i * 48271 + ?) % ? AS u,"
        "   ((i * 2654435761) % 1000) < 50 AS click, ((i * 40503) % 5) = 0 AS o FROM c)"
        ' INSERT INTO decisions (seq, decision_id, ts, "user", bundle_id, deal_id, course_id,'
        " propensity, candidate_set, scores, policy_version, model_id, x, x_dim, status, reward,"
        " closed_at, n_events, grp, presence, city)"
        " SELECT i + 1, 'd' || i, ? + i * ?, printf('%016x%048d', u * 2654435761, 0),"
        " 'D' || ((i * 31 + u) % 40) || '+C' || ((i * 31 + u) % 5),"
        " 'D' || ((i * 31 + u) % 40), 'C' || ((i * 31 + u) % 5), 0.1, 1, ?, 'bench:0', 'bench',"
        " ?, 4, 'learned', click + 2 * (click AND o), ? + i * ? + 3600, click + (click AND o),"
        " CASE WHEN (u * 7) % 10 = 3 THEN 'uniform' ELSE 'policy' END,"
        " CASE u % 3 WHEN 0 THEN 'knowledge' WHEN 1 THEN 'groupbuy' ELSE 'both' END,"
        " 'city' || (u % 5) FROM r",
        (n, seed, n_users, T0, step, x, x, T0, step),
    )
    con.execute(
        "INSERT INTO events (seq, decision_id, event_id, type, value, ts, status)"
        " SELECT ? + 2 * seq, decision_id, NULL, 'click', 0.0, ts + 5, 'accepted'"
        " FROM decisions WHERE n_events >= 1",
        (n,),
    )
    con.execute(
        "INSERT INTO events (seq, decision_id, event_id, type, value, ts, status)"
        " SELECT ? + 2 * seq + 1, decision_id, NULL, 'order', 80.0, ts + 60, 'accepted'"
        " FROM decisions WHERE n_events = 2",
        (n,),
    )
    con.execute("UPDATE journal_seq SET seq = ?", (3 * n + 2,))
    con.commit()
    con.close()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default="/tmp/bench_report.sqlite")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    path = Path(args.db)
    stamp = path.with_suffix(".params")
    params = f"{args.decisions},{args.users},{args.days},{args.seed}"
    if not (path.exists() and stamp.exists() and stamp.read_text() == params):
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        took = generate(path, args.decisions, args.users, args.days, args.seed)
        stamp.write_text(params)
        print(f"generated {args.decisions:,} decisions in {took:.1f} s (not counted)")
    print(f"log: {path} ({path.stat().st_size / 1e9:.2f} GB)")
    print(f"load: {os.getloadavg()}")

    log = open_log(str(path), hmac_key=None, read_only=True, must_exist=True)
    t = time.perf_counter()
    table = table_from_log(log)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    shares, types = experiment_of(log)
    rep = build_report(aggregate(table, types), shares=shares)
    t_agg = time.perf_counter() - t
    print(f"read the log: {t_read:.1f} s; aggregate + report: {t_agg:.1f} s")
    t = time.perf_counter()
    c = time.process_time()
    rep2, _ = report_from_log(log)
    t_all = time.perf_counter() - t
    c_all = time.process_time() - c
    log.close()
    assert rep2.totals == rep.totals
    print(
        f"report_from_log: {t_all:.1f} s wall, {c_all:.1f} s CPU for "
        f"{rep.totals['decisions']:,} decisions"
    )
    overall = [u for u in rep.uplift if u["breakdown"] == "overall" and u["metric"] == "reward"]
    print(f"  overall uplift rows: {overall}")
    print(f"  srm: {rep.srm}")

    env = dict(os.environ)
    cpu = str(sorted(os.sched_getaffinity(0))[0]) if hasattr(os, "sched_getaffinity") else None
    cmd = [str(Path(sys.executable).with_name("bandit")), "report", "--db", str(path), "--json"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    t = time.perf_counter()
    before = os.times()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    t_cli = time.perf_counter() - t
    after = os.times()
    cpu_cli = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    print(
        f"bandit report --json (subprocess, one CPU): {t_cli:.1f} s wall, {cpu_cli:.1f} s CPU, "
        f"exit {done.returncode}"
    )

    if not args.no_peer:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        for name, seg in (("overall", "'all'"), ("day", "CAST(ts / 86400 AS INTEGER)")):
            t = time.perf_counter()
            con.execute(
                "SELECT seg, grp, count(*), sum(n), sum(y), sum(n*n), sum(y*y), sum(n*y) FROM ("
                f" SELECT {seg} AS seg, coalesce(grp, 'policy') AS grp, \"user\","
                " count(*) AS n, sum(reward) AS y FROM decisions GROUP BY 1, 2, 3"
                ") GROUP BY seg, grp"
            ).fetchall()
            print(
                f"peer: SQL GROUP BY, {name} breakdown, reward only: {time.perf_counter() - t:.1f} s"
            )
        con.close()
    if not args.keep:
        for p in (path, stamp):
            p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
