"""kill -9 of decision servers and of the learner, in cycles under load (issue 12).

Starts ``bandit serve-policy --workers 2`` (two decision servers sharing one port through
SO_REUSEPORT, one learner, under the supervisor, which restarts a killed child) on a SQLite log
(or ``--db postgresql://...``, in a schema of its own), drives decisions and click events at it
from this process, and per cycle kills one decision server (alternating) and then the learner
with SIGKILL. Afterwards it checks, from the log:

* every acknowledged decision (200) and event (202) is in the log;
* every decision was learned exactly once (one learned row each, none pending);
* the learner role was taken over within 10 s after each kill (the lease's holder changed);
* model versions only went up (as seen while running, and in the table);
* a replay of the log up to the newest version's position reproduces that version's policy.

Usage::

    python benchmarks/bench_roles_kill.py                    # 20 cycles on SQLite
    python benchmarks/bench_roles_kill.py --cycles 5 --db postgresql://postgres@127.0.0.1:5432/test

``tests/reliability/test_roles_kill9.py`` runs :func:`kill_cycles` with 3 cycles.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KillReport", "build_model", "kill_cycles", "main"]

TOKEN = "kill-bench-token-0123456789abcdefg"
HMAC_KEY = "kill-bench-hmac-key-0123456789abcdef"
_LAUNCH = "import sys; from bandit_engine.cli import app; sys.argv[0] = 'bandit'; app()"


@dataclass
class KillReport:
    """What a run of :func:`kill_cycles` observed and checked."""

    cycles: int = 0
    acked_decisions: int = 0
    acked_events: int = 0
    lost_decisions: list[str] = field(default_factory=list)
    lost_events: list[str] = field(default_factory=list)
    decisions_in_log: int = 0
    learned_rows: int = 0
    pending_left: int = 0
    takeover_seconds: list[float] = field(default_factory=list)
    versions_seen: list[int] = field(default_factory=list)
    versions_table: list[int] = field(default_factory=list)
    replay_matches: bool = False
    replay_version: int = 0
    server_errors: int = 0
    restarts: int = 0

    @property
    def ok(self) -> bool:
        seen = self.versions_seen
        return (
            not self.lost_decisions
            and not self.lost_events
            and self.learned_rows == self.decisions_in_log
            and self.pending_left == 0
            and bool(self.takeover_seconds)
            and max(self.takeover_seconds) <= 10.0
            and all(a <= b for a, b in itertools.pairwise(seen))
            and self.versions_table == sorted(set(self.versions_table))
            and self.replay_matches
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_model(path: Path, *, window: float = 2.0, policy: str = "linucb") -> Path:
    """The demo engine with a short attribution window (so decisions close during a run)."""
    from bandit_engine.demo import demo_engine
    from bandit_engine.engine import Engine
    from bandit_engine.rewards import RewardSpec

    demo = demo_engine(seed=0, policy=policy, epsilon=0.1)
    engine = Engine(
        demo.features,
        demo.catalog,
        demo.policy,
        RewardSpec(click=1.0, order=2.0, window=window),
        model_id="killbench0000000000000000000000",
    )
    engine.save(path)
    return path


def _children(pid: int) -> dict[int, str]:
    try:
        out = subprocess.check_output(["pgrep", "-P", str(pid)], text=True)
    except subprocess.CalledProcessError:
        return {}
    found = {}
    for line in out.split():
        try:
            cmd = Path(f"/proc/{line}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(line)] = "learner" if " learn " in f" {cmd} " else "decide"
    return found


async def _load(
    port: int,
    stop: asyncio.Event,
    acked_dec: set[str],
    acked_ev: set[tuple[str, str]],
    errors: list[str],
    wid: int,
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"http://127.0.0.1:{port}"
    n = 0
    while not stop.is_set():
        # a fresh client after a failure: a killed server leaves its connections dead
        async with httpx.AsyncClient(headers=headers, timeout=10.0) as client:
            while not stop.is_set():
                n += 1
                did = f"w{wid}-{n}-{uuid.uuid4().hex[:6]}"
                try:
                    r = await client.post(
                        f"{url}/v1/decisions",
                        json={"user_id": f"U{n % 500 + 1:06d}", "decision_id": did},
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    break
                if r.status_code >= 500:
                    errors.append(f"{r.status_code} {r.text[:120]}")
                if r.status_code != 200:
                    continue
                acked_dec.add(did)
                if n % 2:
                    continue
                eid = f"ev-{did}"
                try:
                    r = await client.post(
                        f"{url}/v1/events",
                        json={"decision_id": did, "type": "click", "event_id": eid},
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    break
                if r.status_code == 202:
                    acked_ev.add((did, eid))
                elif r.status_code >= 500:
                    errors.append(f"{r.status_code} {r.text[:120]}")
                await asyncio.sleep(0.002)


class _Monitor(threading.Thread):
    """Polls the log: the newest version and the lease holder."""

    def __init__(self, db: str) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.versions: list[int] = []
        self.holder: str | None = None
        self.epoch = 0
        self.changed_at: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from bandit_engine.store import open_log

        log = None
        while not self.stop.is_set():
            try:
                if log is None:
                    log = open_log(self.db, hmac_key=None, read_only=True)
                info = log.latest_version()
                if info is not None and (not self.versions or info.version != self.versions[-1]):
                    self.versions.append(info.version)
                row = log.lease_row()
                if row.holder is not None and row.epoch != self.epoch:
                    self.epoch = row.epoch
                    self.holder = row.holder
                    self.changed_at[row.epoch] = time.monotonic()
            except Exception:
                pass
            self.stop.wait(0.1)
        if log is not None:
            log.close()


def _standby_ready(db: str, supervisor: int) -> bool:
    """Whether both learner processes are up and polling the lease (so the next kill measures a
    take-over, not a process start): on SQLite both have the log file open, on PostgreSQL both
    have their lock session."""
    learners = [p for p, r in _children(supervisor).items() if r == "learner"]
    if len(learners) < 2:
        return False
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'bandit-engine-learner-lock'"
            ).fetchone()
        return row is not None and int(row[0]) >= 2
    target = os.path.realpath(db)
    for pid in learners:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        opened = False
        for fd in fds:
            try:
                opened |= os.path.realpath(f"/proc/{pid}/fd/{fd}") == target
            except OSError:
                continue
        if not opened:
            return False
    return True


def monitor_ready(db: str) -> bool:
    """Whether a learner holds the role yet."""
    from bandit_engine.store import open_log

    try:
        with open_log(db, hmac_key=None, read_only=True) as log:
            return log.lease_row().holder is not None
    except Exception:
        return False


def kill_cycles(
    workdir: Path,
    *,
    cycles: int = 20,
    db: str | None = None,
    connections: int = 8,
    window: float = 2.0,
    settle: float = 1.5,
    recover: float = 5.0,
    log_to: Path | None = None,
) -> KillReport:
    """Run the kill cycles (module docstring) and return what was checked."""
    from bandit_engine.engine import Engine
    from bandit_engine.fileformat import load_state
    from bandit_engine.service.learner import Learner
    from bandit_engine.store import open_log

    model = build_model(workdir / "model.bandit", window=window)
    target = db if db is not None else str(workdir / "events.sqlite")
    port = _free_port()
    env = dict(os.environ, BANDIT_API_TOKEN=TOKEN, BANDIT_HMAC_KEY=HMAC_KEY, PYTHONUNBUFFERED="1")
    out = open(log_to or workdir / "servers.log", "ab")  # noqa: SIM115
    sup = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LAUNCH,
            "serve-policy",
            "--model",
            str(model),
            "--db",
            target,
            "--port",
            str(port),
            "--workers",
            "2",
            "--refresh-interval",
            "1",
            *(["--checkpoint-dir", str(workdir / "cps")] if db else []),
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    report = KillReport()
    monitor = _Monitor(target)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
                if len(_children(sup.pid)) == 4 and monitor_ready(target):
                    break
            except OSError:
                pass
            if sup.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor did not come up (see {out.name})")
            time.sleep(0.2)
        monitor.start()
        acked_dec: set[str] = set()
        acked_ev: set[tuple[str, str]] = set()
        errors: list[str] = []

        async def drive() -> None:
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(_load(port, stop, acked_dec, acked_ev, errors, w))
                for w in range(connections)
            ]
            await asyncio.sleep(settle)
            for cycle in range(cycles):
                kids = _children(sup.pid)
                deciders = sorted(p for p, r in kids.items() if r == "decide")
                if deciders:
                    os.kill(deciders[cycle % len(deciders)], signal.SIGKILL)
                await asyncio.sleep(settle)
                epoch = monitor.epoch
                # the learner holding the role (its holder id names its pid); a standby waits
                holder = monitor.holder or ""
                learners = [
                    p
                    for p, r in _children(sup.pid).items()
                    if r == "learner" and f":{p}:" in holder
                ]
                killed_at = time.monotonic()
                for pid in learners:
                    os.kill(pid, signal.SIGKILL)
                while monitor.epoch == epoch and time.monotonic() - killed_at < 30:
                    await asyncio.sleep(0.05)
                took = monitor.changed_at.get(monitor.epoch, time.monotonic()) - killed_at
                report.takeover_seconds.append(round(took if monitor.epoch != epoch else 99.0, 2))
                report.cycles += 1
                # the supervisor restarts the killed learner, which becomes the next standby:
                # give it time to start, or the next take-over also waits for a process start
                await asyncio.sleep(recover)
                ready_by = time.monotonic() + 90
                while not _standby_ready(target, sup.pid) and time.monotonic() < ready_by:
                    await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(drive())
        report.acked_decisions, report.acked_events = len(acked_dec), len(acked_ev)
        report.server_errors = len(errors)
        # let every window close and the learner catch up
        with open_log(target, hmac_key=None, read_only=True) as log:
            deadline = time.monotonic() + window + 60
            while time.monotonic() < deadline:
                if log.counts().get("decisions_pending", 0) == 0:
                    break
                time.sleep(0.5)
            time.sleep(3.0)  # one more publish interval
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(60)
        except subprocess.TimeoutExpired:
            sup.kill()
        monitor.stop.set()
        monitor.join(5)
        out.close()
    report.versions_seen = monitor.versions
    with open_log(target, hmac_key=None, read_only=True) as log:
        for did in acked_dec:
            if not log.has_decision(did):
                report.lost_decisions.append(did)
        by_decision: dict[str, set[str]] = {}
        for did, eid in acked_ev:
            by_decision.setdefault(did, set()).add(eid)
        for did, eids in by_decision.items():
            try:
                logged = {e["event_id"] for e in log.decision(did)["events"]}
            except Exception:
                logged = set()
            report.lost_events += [f"{did}/{e}" for e in eids - logged]
        counts = log.counts()
        report.decisions_in_log = counts["decisions"]
        report.learned_rows = counts["learned"]
        report.pending_left = counts.get("decisions_pending", 0)
        report.versions_table = [v.version for v in log.versions()]
        newest = log.latest_version()
        if newest is not None:
            data = log.version_state(newest.version)
            assert data is not None
            published = Engine.from_state(load_state(data, "newest version"))
            replayed = Learner.replay(lambda: Engine.load(model), log, newest.log_seq)
            report.replay_version = newest.version
            report.replay_matches = _same_policy(published, replayed)
    return report


def _same_policy(a: Any, b: Any) -> bool:
    import numpy as np

    sa, sb = a.policy.get_state(), b.policy.get_state()
    sa.pop("rng", None)
    sb.pop("rng", None)
    if sa.keys() != sb.keys():
        return False
    for k in sa:
        va, vb = sa[k], sb[k]
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            if not np.array_equal(np.asarray(va), np.asarray(vb)):
                return False
        elif va != vb:
            return False
    return a.n_learned == b.n_learned


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--db", default=None, help="postgresql:// URL (default: a SQLite file)")
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args(argv)
    print(f"cores: {os.cpu_count()}  load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-roles-kill-") as tmp:
        db = args.db
        schema = None
        if db:
            import psycopg

            schema = f"bench_kill_{os.getpid()}"
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            db = f"{db}{'&' if '?' in db else '?'}options=-csearch_path%3D{schema}"
        try:
            r = kill_cycles(Path(tmp), cycles=args.cycles, db=db, connections=args.connections)
        finally:
            if schema:
                import psycopg

                with psycopg.connect(args.db, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print(f"cycles: {r.cycles} (each: kill -9 one decision server, then the learner)")
    print(f"acknowledged: {r.acked_decisions} decisions, {r.acked_events} events")
    print(f"lost: {len(r.lost_decisions)} decisions, {len(r.lost_events)} events")
    print(
        f"log: {r.decisions_in_log} decisions, {r.learned_rows} learned rows, "
        f"{r.pending_left} pending"
    )
    print(
        f"learner take-over after kill -9 (s): max {max(r.takeover_seconds):.2f}, "
        f"all {r.takeover_seconds}"
    )
    print(
        f"versions: {len(r.versions_seen)} seen, newest {r.replay_version}; replay matches: {r.replay_matches}"
    )
    print(f"5xx answers while servers were killed: {r.server_errors}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("PASS" if r.ok else "FAIL")
    return 0 if r.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
