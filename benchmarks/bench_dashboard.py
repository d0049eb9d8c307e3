"""The dashboard's first paint on a large log, and what keeps it fast (issue 13 item 4).

    python benchmarks/bench_dashboard.py [--decisions 1000000] [--users 100000] [--days 30]
                                         [--db /tmp/bench_dashboard.sqlite] [--keep]

The log is the synthetic one of ``bench_report.py`` (same generator, 10% ``uniform`` holdout).
Pinned to one CPU for the server's work (the browser runs beside it). Timed:

* the first build of the live report (:meth:`LiveReport.refresh
  <bandit_engine.reporting.live.LiveReport.refresh>` on an empty cache: a full read, done once
  when the server starts);
* an incremental refresh after 1,000 new decisions (with clicks) are appended: what each refresh
  costs afterwards;
* ``GET /dashboard/data`` on the warm cache (what a page view costs the server);
* **first paint** in headless Chromium (Debian's ``chromium`` via selenium and the system
  chromedriver): from navigation start to every figure and chart on the page (the page sets
  ``data-drawn-ms`` = ``performance.now()`` when it has drawn), median of 5 loads of a real
  uvicorn server, cache warm;
* peer: ``bandit report`` (``report_from_log``), the full scan a page view would cost without the
  cache.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from bench_report import generate  # noqa: E402

from bandit_engine.reporting import report_from_log  # noqa: E402
from bandit_engine.reporting.live import LiveReport  # noqa: E402
from bandit_engine.server import Secret, ServerSettings  # noqa: E402
from bandit_engine.server.app import create_app  # noqa: E402
from bandit_engine.store import open_log  # noqa: E402

TOKEN = "bench-dashboard-token-0123456789-abcdef"
KEY = b"bench-report-key-0123456789abcdef"


def append(path: Path, n: int) -> None:
    """``n`` more decisions (and their clicks) after the last one, as the generator writes them."""
    con = sqlite3.connect(path)
    last, ts = con.execute("SELECT max(seq), max(ts) FROM decisions").fetchone()
    con.execute(
        'INSERT INTO decisions (seq, decision_id, ts, "user", bundle_id, deal_id, course_id,'
        " propensity, candidate_set, scores, policy_version, model_id, x, x_dim, status, reward,"
        " closed_at, n_events, grp, presence, city)"
        " SELECT seq + ?, decision_id || 'x', ? + 1, \"user\", bundle_id, deal_id, course_id,"
        " propensity, candidate_set, scores, policy_version, model_id, x, x_dim, 'pending', NULL,"
        " NULL, 0, grp, presence, city FROM decisions WHERE seq <= ?",
        (last, ts, n),
    )
    ev = con.execute("SELECT max(seq) FROM events").fetchone()[0]
    con.execute(
        "INSERT INTO events (seq, decision_id, event_id, type, value, ts, status)"
        " SELECT ? + seq, decision_id, NULL, 'click', 0.0, ts + 5, 'accepted'"
        " FROM decisions WHERE seq > ? AND seq % 20 = 0",
        (ev, last),
    )
    con.execute("UPDATE journal_seq SET seq = ?", (ev + 2 * n + last + 10,))
    con.commit()
    con.close()


def first_paint(base: str, loads: int) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(executable_path=shutil.which("chromedriver") or "chromedriver"),
        options=opts,
    )
    out = []
    try:
        driver.get(f"{base}/dashboard#token={TOKEN}")  # stores the token in the tab
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.body.getAttribute('data-drawn')") == "1"
        )
        for _ in range(loads):
            driver.get(f"{base}/dashboard")
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.getAttribute('data-drawn')") == "1"
            )
            ms = driver.execute_script("return document.body.getAttribute('data-drawn-ms')")
            out.append(float(ms) / 1000.0)
    finally:
        driver.quit()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default="/tmp/bench_dashboard.sqlite")
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    path = Path(args.db)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    took = generate(path, args.decisions, args.users, args.days, args.seed)
    print(f"generated {args.decisions:,} decisions in {took:.1f} s (not counted)")
    print(f"load: {os.getloadavg()}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    log = open_log(str(path), hmac_key=None, read_only=True)
    live = LiveReport()
    t, c = time.perf_counter(), time.process_time()
    snap = live.refresh(log)
    print(
        f"first build of the live report: {time.perf_counter() - t:.2f} s wall, "
        f"{time.process_time() - c:.2f} s CPU ({snap.report.totals['decisions']:,} decisions)"
    )
    t = time.perf_counter()
    full, _ = report_from_log(log)
    print(f"peer: report_from_log (a full scan): {time.perf_counter() - t:.2f} s wall")
    assert full.to_dict() == snap.report.to_dict()
    append(path, 1_000)
    t, c = time.perf_counter(), time.process_time()
    snap = live.refresh(log)
    print(
        f"incremental refresh after 1,000 new decisions: {time.perf_counter() - t:.2f} s wall, "
        f"{time.process_time() - c:.2f} s CPU (rebuilt: {snap.rebuilt})"
    )
    full, _ = report_from_log(log)
    assert full.to_dict() == snap.report.to_dict(), "incremental != full"
    log.close()

    # a real server over the log: the demo engine (the log's rows are not replayed into it)
    import uvicorn

    from bandit_engine.demo import demo_engine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp())
    settings = ServerSettings(
        db=str(path),
        api_token=Secret(TOKEN.encode()),
        checkpoint_dir=str(tmp / "ckpt"),
        dashboard_refresh=3600.0,
        port=port,
    )
    slog = open_log(str(path), hmac_key=KEY)
    app = create_app(demo_engine(seed=0), slog, settings)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, timeout=120) as client:
        t = time.perf_counter()
        client.get("/dashboard/data", headers=auth).raise_for_status()  # waits for the build
        print(f"server: first /dashboard/data (the startup build): {time.perf_counter() - t:.2f} s")
        times = []
        for _ in range(20):
            t = time.perf_counter()
            r = client.get("/dashboard/data", headers=auth)
            times.append(time.perf_counter() - t)
        r.raise_for_status()
        print(
            f"server: /dashboard/data on the warm cache: median {statistics.median(times) * 1e3:.1f}"
            f" ms, {len(r.content) / 1e3:.0f} kB"
        )
    if shutil.which("chromium") and shutil.which("chromedriver"):
        paints = first_paint(base, args.loads)
        print(
            f"first paint (headless chromium, navigation start to every chart drawn): median "
            f"{statistics.median(paints):.2f} s, max {max(paints):.2f} s over {len(paints)} loads"
        )
    else:
        print("first paint: skipped (no chromium / chromedriver)")
    print(f"load: {os.getloadavg()}")
    srv.should_exit = True
    thread.join(timeout=30)
    slog.close()
    if not args.keep:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
