"""Do two processes on the machine's 2 vCPUs run as fast as one?

    python benchmarks/probe_cores.py

Three loops, each timed alone and then two side by side: a Python integer loop and a numpy loop
on an L1-resident array (pure compute), and a numpy loop streaming a 64 MB array (memory
bandwidth). Prints the throughput ratio ``2 x alone / slower of the pair``: 2.0 means two
independent cores; SMT siblings (two vCPUs on one physical core) give far less on the compute
loops. Read a ``--workers`` speed-up (``bench_dask_ope.py``, ``bench_server.py``) against it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np


def py_loop(_: object = None) -> float:
    t = time.perf_counter()
    s = 0
    for i in range(20_000_000):
        s += i * i
    return time.perf_counter() - t


def np_loop(_: object = None) -> float:
    a = np.random.default_rng(0).random(2048)  # 16 KB: L1
    t = time.perf_counter()
    for _ in range(60_000):
        b = np.exp(a)
        b *= a
        a = b / (1.0 + b)
    return time.perf_counter() - t


def mem_loop(_: object = None) -> float:
    a = np.ones(64 * 2**20 // 8)  # 64 MB: beyond L3
    t = time.perf_counter()
    for _ in range(60):
        a *= 1.0000001
    return time.perf_counter() - t


if __name__ == "__main__":
    for fn in (py_loop, np_loop, mem_loop):
        alone = fn()
        with mp.get_context("fork").Pool(2) as pool:
            pair = pool.map(fn, [0, 1])
        print(
            f"{fn.__name__}: alone {alone:.2f} s, side by side {pair[0]:.2f} / {pair[1]:.2f} s, "
            f"throughput ratio {2 * alone / max(pair):.2f}x; load {os.getloadavg()[0]:.2f}"
        )
