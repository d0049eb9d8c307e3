"""Bulk profile import: ``bandit profiles import`` of two platforms' tables, time and peak memory.

Writes two synthetic tables in the demo schema's columns (``knowledge`` and ``groupbuy``, ``--rows``
rows in all, half each; Parquet by default, in row groups so this script's own memory stays
bounded), then imports each with the real command (a subprocess, as a user runs it) into a new
event log, and prints each import's wall time, rows per second, the CPU time of the import
process (user + system: on a machine shared with other jobs the wall time grows with the load,
the CPU time much less) and its peak resident memory (``ru_maxrss`` of the child).

Target (issue 14): 10,000,000 rows (two platforms) in <= 2 minutes with bounded memory.

Usage::

    python benchmarks/bench_profiles_import.py                        # 10,000,000 rows, SQLite
    python benchmarks/bench_profiles_import.py --rows 1000000 --format csv
    python benchmarks/bench_profiles_import.py --db postgresql://postgres@127.0.0.1:5432/test

With a PostgreSQL URL the log goes to a new schema (``bench_profiles_<pid>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CITIES = ["beijing", "shanghai", "guangzhou", "shenzhen", "chengdu", "hangzhou", "wuhan", "xian"]
CUISINES = ["hotpot", "sichuan", "bbq", "cantonese", "noodles", "vegetarian", "japanese", "dessert"]
TOPICS = ["python", "finance", "history", "wine", "language", "fitness", "parenting", "cooking"]
AGES = ["18-24", "25-34", "35-44", "45-54", "55+"]
MEMBERSHIP = ["none", "basic", "premium"]
T0 = 1_760_000_000.0


def _tags(rng: np.random.Generator, vocab: list[str], n: int) -> pa.Array:
    counts = rng.integers(0, 4, size=n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = pa.array(np.asarray(vocab, dtype=object)[rng.integers(0, len(vocab), offsets[-1])])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _batch(platform: str, start: int, n: int, rng: np.random.Generator) -> pa.RecordBatch:
    ids = pa.array([f"U{i:09d}" for i in range(start, start + n)])
    pick = lambda vocab: pa.array(np.asarray(vocab, dtype=object)[rng.integers(0, len(vocab), n)])  # noqa: E731
    if platform == "knowledge":
        cols = {
            "user_id": ids,
            "age_band": pick(AGES),
            "membership": pick(MEMBERSHIP),
            "topics": _tags(rng, TOPICS, n),
            "courses_bought": pa.array(rng.poisson(2.0, n).astype(np.float64)),
            "spend_knowledge": pa.array(np.round(rng.gamma(2.0, 60.0, n), 2)),
            "last_course_at": pa.array(T0 - rng.uniform(0, 365 * 86_400, n)),
        }
    else:
        cols = {
            "user_id": ids,
            "city": pick(CITIES),
            "cuisines": _tags(rng, CUISINES, n),
            "avg_ticket": pa.array(np.round(rng.gamma(3.0, 30.0, n), 1)),
            "orders_90d": pa.array(rng.poisson(3.0, n).astype(np.float64)),
            "coupon_rate": pa.array(np.round(rng.uniform(0, 1, n), 2)),
            "last_order_at": pa.array(T0 - rng.uniform(0, 180 * 86_400, n)),
        }
    return pa.RecordBatch.from_pydict(cols)


def write_table(path: Path, platform: str, rows: int, fmt: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    step = 500_000
    writer: Any = None
    try:
        for start in range(0, rows, step):
            batch = _batch(platform, start, min(step, rows - start), rng)
            if fmt == "csv":
                # tags as JSON lists, the CSV form `bandit profiles import` reads
                cols = []
                for col in batch.columns:
                    if pa.types.is_list(col.type):
                        col = pa.array(
                            ["[" + ",".join(f'"{t}"' for t in v) + "]" for v in col.to_pylist()]
                        )
                    cols.append(col)
                batch = pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
                if writer is None:
                    writer = pacsv.CSVWriter(str(path), batch.schema)
            elif writer is None:
                writer = pq.ParquetWriter(str(path), batch.schema)
            writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()


def _proc_stat(pid: int) -> tuple[int, float, int]:
    """(parent pid, CPU seconds, resident bytes) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, int(fields[21]) * page


def _watch(proc: subprocess.Popen[bytes], every: float = 0.2) -> dict[str, float]:
    """Wait for ``proc``, sampling its process tree (it and its children, from /proc) every
    ``every`` seconds: the peak of their summed resident memory and the CPU seconds last seen
    of the children (the worker; a sample may miss up to ``every`` seconds of its end)."""
    peak = 0
    children: dict[int, float] = {}
    while proc.poll() is None:
        rss = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ppid, cpu, size = _proc_stat(int(entry))
            except (OSError, IndexError, ValueError):
                continue
            if int(entry) == proc.pid:
                rss += size
            elif ppid == proc.pid:
                rss += size
                children[int(entry)] = cpu
        peak = max(peak, rss)
        time.sleep(every)
    return {"rss": float(peak), "cpu_children": sum(children.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows in all (half per platform)")
    ap.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    ap.add_argument("--db", default=None, help="postgresql:// URL (default: a new SQLite file)")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--commit-rows", type=int, default=500_000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument(
        "--workers", type=int, default=None, help="passed to the command (default: automatic)"
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-profiles-"))
    env = dict(os.environ, BANDIT_HMAC_KEY=secrets.token_hex(32))
    db = args.db
    schema = None
    if db is None:
        db = str(tmp / "events.sqlite")
    else:
        import psycopg

        schema = f"bench_profiles_{os.getpid()}"
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in db else "?"
        db = f"{db}{sep}options=-csearch_path%3D{schema}"
    half = args.rows // 2
    files = {}
    t = time.perf_counter()
    for i, platform in enumerate(("knowledge", "groupbuy")):
        path = tmp / f"{platform}.{args.format}"
        write_table(path, platform, half if i == 0 else args.rows - half, args.format, seed=i)
        files[platform] = path
    print(f"wrote {args.rows:,} rows in {time.perf_counter() - t:.1f} s to {tmp}", flush=True)
    print(f"load: {os.getloadavg()}", flush=True)
    bandit = [sys.executable, "-c", "from bandit_engine.cli import app; app()"]
    total = 0.0
    total_cpu = 0.0
    peak_tree = 0.0
    try:
        for platform, path in files.items():
            cmd = [
                *bandit,
                "profiles",
                "import",
                str(path),
                "--db",
                db,
                "--platform",
                platform,
                "--demo",
                "--chunk-rows",
                str(args.chunk_rows),
                "--commit-rows",
                str(args.commit_rows),
            ]
            if args.workers is not None:
                cmd += ["--workers", str(args.workers)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env)
            tree = _watch(proc)
            dt = time.perf_counter() - t
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, cmd)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            total += dt
            total_cpu += cpu
            peak_tree = max(peak_tree, tree["rss"])
            n = half if platform == "knowledge" else args.rows - half
            worker = tree["cpu_children"]
            print(
                f"{platform}: {n:,} rows in {dt:.1f} s wall ({n / dt:,.0f} rows/s), "
                f"{cpu:.1f} s CPU of the import and its worker (worker ~{worker:.1f} s, "
                f"importer ~{cpu - worker:.1f} s); peak RSS of both together "
                f"{tree['rss'] / 2**20:.0f} MB",
                flush=True,
            )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = (tmp / "events.sqlite").stat().st_size / 2**20 if args.db is None else float("nan")
        print(
            f"total: {args.rows:,} rows ({args.format}) "
            f"in {total:.1f} s wall = {args.rows / total:,.0f} rows/s ({total_cpu:.1f} s CPU); "
            f"peak RSS of an import process {peak:.0f} MB, of an import and its worker "
            f"together {peak_tree / 2**20:.0f} MB; log size {size:.0f} MB; "
            + (
                f"target (10,000,000 rows <= 120 s): {'PASS' if total <= 120 else 'FAIL'}"
                if args.rows >= 10_000_000
                else "(the target is for 10,000,000 rows)"
            )
        )
        print(f"load: {os.getloadavg()}", flush=True)
    finally:
        if schema is not None:
            import psycopg

            with psycopg.connect(args.db, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
