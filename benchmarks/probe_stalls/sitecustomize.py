"""Instrument a ``bandit serve-policy`` process from outside: collections, loop stalls, slow SQL.

Put this folder first on ``PYTHONPATH`` and name an output prefix in ``BANDIT_PROBE``; every
``serve-policy`` process started with that environment (``bench_server.py`` passes its own on)
writes ``<prefix>.<pid>``, one line per finding, seconds since start first:

* ``GC <generation> <ms> collected <n> tracked <n>``: every full collection (tracked objects
  outside the frozen set after it) and any younger one over 5 ms;
* ``STALL <ms> samples <n>`` then the most frequent stacks of the main thread: a callback posted
  to the event loop every 5 ms waited more than 15 ms; the main thread's stack is sampled every
  2 ms meanwhile (innermost frame first);
* ``PGSLOW <method> <ms> <thread> <first argument>``: a call of the PostgreSQL session
  (``bandit_engine.store.postgres.PgSession``) over 10 ms;
* ``LOG ...``: the library's warnings and errors, with tracebacks.

Usage (issue 12's tail, benchmarks/README.md)::

    BANDIT_PROBE=/tmp/probe PYTHONPATH=benchmarks/probe_stalls:. python benchmarks/bench_server.py \\
        --db postgresql://postgres@127.0.0.1:5432/test --sync NORMAL --seconds 60

``python benchmarks/probe_stalls/sitecustomize.py <prefix>.<pid>`` summarizes a file: full
collections while serving (count, total, largest, tracked objects), stalls over 15 / 50 / 100 ms
and where the main thread was during them.

The probe costs the server a thread that wakes every few milliseconds; compare runs with it on
both sides, not against runs without it.
"""

from __future__ import annotations

import os
import sys

_OUT = os.environ.get("BANDIT_PROBE")


def _install(out: str) -> None:
    import asyncio
    import asyncio.events
    import collections
    import functools
    import gc
    import threading
    import time
    from typing import Any

    t0 = time.monotonic()
    sink = open(f"{out}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115 (lives with the process)

    def write(*parts: object) -> None:
        sink.write(f"{time.monotonic() - t0:9.3f} " + " ".join(str(p) for p in parts) + "\n")

    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1e3
        if info["generation"] == 2:
            write(
                "GC 2",
                f"{ms:.1f}ms",
                "collected",
                info["collected"],
                "tracked",
                len(gc.get_objects()),
            )
        elif ms > 5.0:
            write("GC", info["generation"], f"{ms:.1f}ms", "collected", info["collected"])

    gc.callbacks.append(on_gc)
    # the library's warnings and errors (a failed batch, a rebuild) with their tracebacks, in
    # the same file: the server's own log is gone with the benchmark's temporary folder
    import logging

    handler = logging.StreamHandler(sink)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("LOG %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("bandit_engine").addHandler(handler)
    main = threading.main_thread().ident
    loops: list[asyncio.AbstractEventLoop] = []
    original = asyncio.events._set_running_loop

    def set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
        # uvloop takes asyncio._set_running_loop when it is imported, after this module
        if loop is not None and threading.current_thread() is threading.main_thread():
            loops.append(loop)
        original(loop)

    asyncio.events._set_running_loop = set_running_loop
    asyncio._set_running_loop = set_running_loop

    # The main thread's stack through faulthandler, which reads the interpreter's frames in C and
    # makes no frame objects: walking ``sys._current_frames()`` with ``f_back`` from this thread
    # crashed a 3.11 server once (a segfault in the probe's thread, reading a freed frame).
    import faulthandler
    import tempfile

    scratch = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives with the process)

    def stack() -> str:
        scratch.seek(0)
        scratch.truncate()
        faulthandler.dump_traceback(scratch, all_threads=True)
        scratch.seek(0)
        text = scratch.read()
        out: list[str] = []
        mine = False
        for line in text.splitlines():
            if line.startswith(("Thread 0x", "Current thread 0x")):
                ident = next(t for t in line.split() if t.startswith("0x"))
                mine = int(ident, 16) == main
                continue
            if mine and line.strip().startswith("File ") and len(out) < 8:
                # '  File "/path/x.py", line 12 in name'
                path, _, rest = line.strip()[6:].partition('", line ')
                lineno, _, name = rest.partition(" in ")
                out.append(f"{os.path.basename(path)}:{lineno}:{name}")
        return " < ".join(out)

    def watch() -> None:
        while not loops:
            time.sleep(0.2)
        loop = loops[-1]
        write("LOOP", type(loop).__name__)
        ran = threading.Event()
        while True:
            ran.clear()
            posted = time.perf_counter()
            try:
                loop.call_soon_threadsafe(ran.set)
            except RuntimeError:  # the loop closed
                return
            samples: collections.Counter[str] = collections.Counter()
            while not ran.wait(0.002):
                samples[stack()] += 1
            ms = (time.perf_counter() - posted) * 1e3
            if ms > 15.0:
                write("STALL", f"{ms:.1f}ms", "samples", sum(samples.values()))
                for where, n in samples.most_common(4):
                    write("   ", n, where)
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True, name="bandit-probe").start()
    try:
        from bandit_engine.store import postgres
    except ImportError:  # no postgres extra: nothing to time
        return
    for name in ("execute", "begin", "commit", "send"):
        method = getattr(postgres.PgSession, name)

        def timed(method: Any, name: str) -> Any:
            @functools.wraps(method)
            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return method(self, *args, **kwargs)
                finally:
                    ms = (time.perf_counter() - t) * 1e3
                    if ms > 10.0:
                        thread = threading.current_thread().name
                        write("PGSLOW", name, f"{ms:.1f}ms", thread, str(args[:1])[:100])

            return call

        setattr(postgres.PgSession, name, timed(method, name))


def summarize(path: str) -> None:
    """Print what one probe file says (after the loop started: start-up is not serving)."""
    import collections

    full: list[tuple[float, int]] = []
    stalls: list[float] = []
    where: collections.Counter[str] = collections.Counter()
    serving = False
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            if parts[1] == "LOOP":
                serving = True
            elif serving and parts[1:3] == ["GC", "2"]:
                full.append((float(parts[3][:-2]), int(parts[-1])))
            elif parts[1] == "STALL":
                stalls.append(float(parts[2][:-2]))
            elif parts[1].isdigit() and len(parts) > 2:
                where[" < ".join(" ".join(parts[2:]).split(" < ")[:2])] += int(parts[1])
    # the first is the lifespan's gc.collect() before its freeze (start-up, not serving); the
    # last ones may be the shutdown's final checkpoint
    ms = [m for m, _ in full[1:]]
    print(
        f"full collections while serving: {len(ms)}, total {sum(ms):.0f} ms, largest "
        f"{max(ms, default=0):.1f} ms; ms/tracked objects in order: "
        + " ".join(f"{m:.0f}/{n}" for m, n in full[1:])
    )
    print(
        f"loop stalls over 15 ms: {len(stalls)}, over 50 ms: {sum(s > 50 for s in stalls)}, "
        f"over 100 ms: {sum(s > 100 for s in stalls)}, total {sum(stalls) / 1e3:.1f} s"
    )
    for stack, n in where.most_common(6):
        print(f"  {n * 2:6d} ms  {stack}")


if __name__ == "__main__":
    summarize(sys.argv[1])
elif _OUT and "serve-policy" in sys.orig_argv:
    _install(_OUT)
