"""IPS + SNIPS + DR over a partitioned Parquet log: one process against Dask workers.

    python benchmarks/bench_dask_ope.py generate --rows 100000000 --parts 100 --out /tmp/ope-log
    python benchmarks/bench_dask_ope.py run --log /tmp/ope-log --workers 2

``generate`` writes ``--parts`` Parquet partitions (not committed; about 26 bytes per row, so
100,000,000 rows take about 2.6 GB: check ``df -h`` first) of a log with a uniform logger over
``--actions`` actions: columns ``action`` (int16), ``pscore`` (float32), ``reward`` (0/1, int8)
and a context ``x_0 .. x_{d-1}`` (float32). Each partition comes from its own seeded generator,
so the files do not depend on how many are written at a time.

``run`` evaluates one fixed target policy on every row, partition by partition, with the
streaming accumulators (``IPSAccumulator``, ``SNIPSAccumulator``, ``DRAccumulator``): first in
this process, then on a Dask ``LocalCluster`` of ``--workers`` single-threaded processes (each
task reads its partition itself and returns its accumulators, merged on the driver with
``merge``). The policy's action distribution is *computed on the fly* from the context, not
stored: ``pi(. | x) = softmax(x @ W)`` over the actions, and DR's reward model
``q(x, a) = sigmoid(x @ B)[a]`` likewise (W, B fixed by ``--seed``). What travels to a worker:
the partition's path and the two (d, K) matrices; what comes back: three accumulators (a few
hundred bytes each).

It prints both timings, their ratio (one-process seconds / Dask seconds), the largest relative
difference between the two runs' estimates and interval ends (target: identical to 1e-12), the
per-partition cost and the cost of a 1,000,000,000-row run extrapolated from it, and the load
average before and after (the machine may be shared).
"""

from __future__ import annotations

import os

# one BLAS thread per process: the workers are the parallelism
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

__all__ = ["main"]

# Rows per policy block. The policy's (block, K) float64 arrays (the distribution and the reward
# model, 2 x 1,024 x 80 x 8 bytes) stay near a core's own 1 MiB L2 cache and are reduced at once
# to the three numbers per row the estimators need (DRAccumulator.update_reduced). With 16,384-row
# blocks each array was 10 MB: one process kept its few in the shared 32 MiB L3, two processes
# did not, and streamed them through memory, so two workers ran each partition 17% slower than
# one process alone and the ratio stopped near 1.6x.
_BLOCK = 1_024
# Rows per accumulator update (per-row vectors only: the updates' fixed cost, not memory, counts).
_CHUNK = 65_536


def _partition(seed: int, part: int, rows: int, k: int, d: int) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng([seed, part])
    x = rng.normal(size=(rows, d)).astype(np.float32)
    action = rng.integers(0, k, rows).astype(np.int16)
    # the true click rate depends on the context and the action (so the estimates move)
    _, b = _model(seed, k, d)
    logit = np.einsum("ij,ij->i", x, b[:, action].T)
    p = 1.0 / (1.0 + np.exp(-(logit - 4.0)))
    reward = (rng.random(rows) < p).astype(np.int8)
    cols = {"action": action, "pscore": np.full(rows, 1.0 / k, dtype=np.float32)}
    cols["reward"] = reward
    cols.update({f"x_{j}": x[:, j] for j in range(d)})
    return pa.table(cols)


def _model(seed: int, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The target policy's weights W and the reward model's B, both (d, K)."""
    rng = np.random.default_rng([seed, 2**31])
    return rng.normal(0.0, 0.7, size=(d, k)), rng.normal(0.0, 0.5, size=(d, k))


def generate(out: Path, rows: int, parts: int, k: int, d: int, seed: int) -> None:
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, rows, parts + 1).astype(np.int64)
    t0 = time.perf_counter()
    for i in range(parts):
        n = int(bounds[i + 1] - bounds[i])
        pq.write_table(_partition(seed, i, n, k, d), out / f"part-{i:05d}.parquet")
    size = sum(p.stat().st_size for p in out.glob("*.parquet"))
    print(
        f"wrote {rows:,} rows x {k} actions in {parts} partitions to {out} "
        f"({size / 2**30:.2f} GiB, {time.perf_counter() - t0:.1f} s)"
    )


def evaluate_partition(
    path: str, w: np.ndarray, b: np.ndarray, block: int = _BLOCK
) -> tuple[Any, Any, Any, float]:
    """IPS, SNIPS and DR accumulators over one partition (what a worker runs), and its seconds."""
    import pyarrow.parquet as pq

    from bandit_engine.evaluation import DRAccumulator, IPSAccumulator, SNIPSAccumulator

    t0 = time.perf_counter()
    table = pq.read_table(path)
    d, k = w.shape
    action = table.column("action").to_numpy().astype(np.int64)
    pscore = table.column("pscore").to_numpy().astype(np.float64)
    reward = table.column("reward").to_numpy().astype(np.float64)
    x = np.column_stack([table.column(f"x_{j}").to_numpy() for j in range(d)]).astype(np.float64)
    n = action.shape[0]
    # per row: pi(a_i | x_i), sum_a pi(a | x_i) qhat(x_i, a) and qhat(x_i, a_i)
    prob, value, q_logged = np.empty(n), np.empty(n), np.empty(n)
    dist_buf, q_buf, col = np.empty((block, k)), np.empty((block, k)), np.empty((block, 1))
    rows = np.arange(block)
    for lo in range(0, n, block):
        m = min(block, n - lo)
        xs, a, idx = x[lo : lo + m], action[lo : lo + m], rows[:m]
        # softmax and sigmoid in place, in the block's reused buffers
        dist, qhat, c = dist_buf[:m], q_buf[:m], col[:m]
        np.matmul(xs, w, out=dist)
        np.max(dist, axis=1, keepdims=True, out=c)
        dist -= c
        np.exp(dist, out=dist)
        np.sum(dist, axis=1, keepdims=True, out=c)
        dist /= c
        np.matmul(xs, b, out=qhat)
        qhat -= 4.0
        np.negative(qhat, out=qhat)
        np.exp(qhat, out=qhat)
        qhat += 1.0
        np.reciprocal(qhat, out=qhat)
        prob[lo : lo + m] = dist[idx, a]
        q_logged[lo : lo + m] = qhat[idx, a]
        np.einsum("ij,ij->i", dist, qhat, out=value[lo : lo + m])
    ipsa, snipsa, dra = IPSAccumulator(), SNIPSAccumulator(), DRAccumulator()
    for lo in range(0, n, _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        common = {"reward": reward[sl], "action": action[sl], "pscore": pscore[sl]}
        ipsa.update(**common, action_prob=prob[sl])
        snipsa.update(**common, action_prob=prob[sl])
        dra.update_reduced(
            **common, action_prob=prob[sl], model_value=value[sl], estimated_reward=q_logged[sl]
        )
    return ipsa, snipsa, dra, time.perf_counter() - t0


def _merge(results: list[tuple[Any, Any, Any, float]]) -> tuple[list[Any], list[float]]:
    accs = [functools.reduce(lambda p, q: p.merge(q), [r[i] for r in results]) for i in range(3)]
    return [a.result() for a in accs], [r[3] for r in results]


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def run(
    log: Path, workers: int, seed: int, actions: int, skip_single: bool, plain: bool = False
) -> None:
    paths = sorted(str(p) for p in log.glob("*.parquet"))
    if not paths:
        raise SystemExit(f"no Parquet partitions in {log}: run 'generate' first")
    import pyarrow.parquet as pq

    meta = pq.read_metadata(paths[0])
    d = sum(1 for name in meta.schema.names if name.startswith("x_"))
    rows = sum(pq.read_metadata(p).num_rows for p in paths)
    w, b = _model(seed, actions, d)
    print(f"{rows:,} rows x {actions} actions in {len(paths)} partitions; load {os.getloadavg()}")

    single: list[Any] | None = None
    t_single = float("nan")
    per_part: list[float] = []
    if not skip_single:
        t0 = time.perf_counter()
        single, per_part = _merge([evaluate_partition(p, w, b) for p in paths])
        t_single = time.perf_counter() - t0
        print(f"one process: {t_single:.1f} s; load {os.getloadavg()}")

    if plain:
        # the same function in plain processes, no Dask: what the machine allows two processes
        import multiprocessing as mp

        fn = functools.partial(evaluate_partition, w=w, b=b)
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(fn, paths[:workers])  # started and imported before the clock starts
            t0 = time.perf_counter()
            plain_results = pool.map(fn, paths, chunksize=1)
            t_plain = time.perf_counter() - t0
        print(
            f"{workers} plain processes (multiprocessing, no Dask): {t_plain:.1f} s (per "
            f"partition: median {np.median([r[3] for r in plain_results]):.2f} s); ratio "
            f"one-process / plain: {t_single / t_plain:.2f}x; load {os.getloadavg()}"
        )

    from dask.distributed import Client

    from bandit_engine.evaluation.parallel import local_cluster

    # the cluster `bandit evaluate --workers N` starts (single-threaded workers, allocator kept)
    with local_cluster(workers) as cluster, Client(cluster) as client:
        client.run(lambda: None)  # workers are up before the clock starts
        t0 = time.perf_counter()
        wf, bf = client.scatter(w, broadcast=True), client.scatter(b, broadcast=True)
        futures = [client.submit(evaluate_partition, p, wf, bf, pure=False) for p in paths]
        parallel, per_part_dask = _merge(client.gather(futures))
        t_dask = time.perf_counter() - t0
    print(
        f"{workers} Dask workers: {t_dask:.1f} s (per partition inside a worker: median "
        f"{np.median(per_part_dask):.2f} s, sum {sum(per_part_dask):.1f} s); load "
        f"{os.getloadavg()}"
    )
    for name, est in zip(("ips", "snips", "dr"), parallel, strict=True):
        print(f"  {name:6s} {est.value:.10f} [{est.ci_low:.10f}, {est.ci_high:.10f}]")
    if single is not None:
        worst = max(
            _relative(getattr(s, f), getattr(p, f))
            for s, p in zip(single, parallel, strict=True)
            for f in ("value", "ci_low", "ci_high")
        )
        print(f"largest relative difference, one process vs Dask: {worst:.2e}")
        print(f"ratio one-process time / Dask time: {t_single / t_dask:.2f}x")
    costs = per_part or per_part_dask
    where = "in one process" if per_part else "inside the Dask workers"
    per_row = sum(costs) / rows
    print(
        f"per partition ({rows // len(paths):,} rows): median {np.median(costs):.2f} s, "
        f"{per_row * 1e9:.0f} ns per row {where}"
    )
    print(
        f"1,000,000,000 rows, extrapolated: {per_row * 1e9:.0f} s of work = "
        f"{per_row * 1e9 / workers:.0f} s on {workers} workers if they scale perfectly"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--rows", type=int, default=10_000_000)
    g.add_argument("--parts", type=int, default=10)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--actions", type=int, default=80)
    g.add_argument("--features", type=int, default=4)
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--log", type=Path, required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--actions", type=int, default=80)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--skip-single", action="store_true", help="only the Dask run")
    r.add_argument(
        "--plain",
        action="store_true",
        help="also time the same function in plain processes (multiprocessing, no Dask)",
    )
    args = ap.parse_args(argv)
    if args.cmd == "generate":
        generate(args.out, args.rows, args.parts, args.actions, args.features, args.seed)
    else:
        run(args.log, args.workers, args.seed, args.actions, args.skip_single, args.plain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
