"""Concurrency with real server processes: duplicate events, two servers on one database, and
secrets kept out of the logs."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from reliability.engine_factory import save_small_engine
from reliability.proc import HMAC_KEY, TOKEN, ServerProcess

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post_one_event_k_times(
    server: ServerProcess, k: int
) -> tuple[str, float, list[httpx.Response], float]:
    """One decision, then one event posted ``k`` times concurrently. Returns the decision id,
    its server timestamp, the ``k`` responses and the wall-clock time once all had arrived."""

    async def scenario() -> tuple[str, float, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30) as c:
            r = await c.post("/v1/decisions", json={"user_id": "alice-raw-id"})
            did, decided_at = r.json()["decision_id"], float(r.json()["timestamp"])
            body = {"decision_id": did, "type": "click", "event_id": "same-click"}
            posts = [c.post("/v1/events", json=body) for _ in range(k)]
            return did, decided_at, list(await asyncio.gather(*posts))

    did, decided_at, responses = asyncio.run(scenario())
    return did, decided_at, responses, time.time()


@pytest.mark.slow
def test_same_event_posted_k_times_concurrently_is_stored_and_learned_once(
    tmp_path: Path,
) -> None:
    k = 25
    # The window must stay open until the last of the k posts is processed, or the first one
    # to be processed is "late" and nothing is learned from it. The server stamps the decision
    # and every event with its wall clock (time.time, as this process reads it), and each event
    # is stamped before its response is sent, so "all responses back before decision time +
    # window" proves no event fell outside the window. A short window keeps the test fast;
    # when a loaded machine made the posting slower than that, the attempt proves nothing,
    # so it is repeated with a window several times what the posting was measured to take.
    window = 1.5
    for attempt in range(5):
        run_dir = tmp_path / f"attempt{attempt}"
        run_dir.mkdir()
        model = save_small_engine(run_dir / "model.bandit", window=window)
        db = run_dir / "events.sqlite"
        log_path = run_dir / "server.log"
        server = ServerProcess(
            model=model, db=db, log_path=log_path, extra=["--log-level", "debug", "--access-log"]
        ).start()
        try:
            did, decided_at, responses, done_at = _post_one_event_k_times(server, k)
        except BaseException:
            server.stop()
            raise
        took = done_at - decided_at
        if took < window:
            break
        server.stop()
        window = max(2 * window, 4 * took)
    else:
        pytest.fail(f"posting {k} events took {took:.1f} s, longer than every window tried")
    try:
        statuses = sorted(r.json()["status"] for r in responses)
        assert all(r.status_code == 202 for r in responses)
        assert statuses == ["accepted"] + ["duplicate"] * (k - 1)
        # the window closes; the server's timer learns the decision without any request
        # (a condition with a generous bound, not a fixed sleep)
        deadline = time.monotonic() + window + 60
        record = {}
        while time.monotonic() < deadline:
            record = httpx.get(f"{server.url}/v1/decisions/{did}", headers=AUTH, timeout=30).json()
            if record["status"] != "pending":
                break
            time.sleep(0.25)
        assert (record["status"], record["reward"], record["n_events"]) == ("learned", 1.0, 1)
        assert len(record["events"]) == 1
        # also poke with wrong tokens and bad input, for the log check below
        httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer not-the-token-xyz"})
        httpx.post(f"{server.url}/v1/events", headers=AUTH, content=b"{bad json")
    finally:
        # uvicorn re-raises SIGTERM after its graceful shutdown, hence -SIGTERM
        assert server.stop() in (0, -signal.SIGTERM)
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT count(*) FROM events WHERE decision_id = ?", (did,)).fetchone()
        learned = con.execute(
            "SELECT count(*) FROM learned WHERE decision_id = ?", (did,)
        ).fetchone()
    finally:
        con.close()
    assert rows[0] == 1 and learned[0] == 1
    text = log_path.read_text()
    assert "POST /v1/events" in text  # the access log was on, so requests were logged
    for secret in (TOKEN, HMAC_KEY, "not-the-token-xyz", "alice-raw-id"):
        assert secret not in text, secret
    assert b"alice-raw-id" not in b"".join(
        p.read_bytes() for p in run_dir.glob("events.sqlite*") if p.is_file()
    )


@pytest.mark.slow
def test_two_processes_on_one_database_never_answer_5xx(tmp_path: Path) -> None:
    model = save_small_engine(tmp_path / "model.bandit", window=60.0)
    db = tmp_path / "events.sqlite"
    servers = [
        ServerProcess(
            model=model,
            db=db,
            log_path=tmp_path / f"server{i}.log",
            # FULL makes every commit slow (an fsync), so the two writers contend for the lock
            extra=["--synchronous", "FULL", "--checkpoint-dir", str(tmp_path / f"cp{i}")],
        )
        for i in range(2)
    ]
    for s in servers:
        s.start()
    try:

        async def worker(server: ServerProcess, wid: int, until: float) -> list[tuple[int, str]]:
            seen: list[tuple[int, str]] = []
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as c:
                n = 0
                while time.monotonic() < until:
                    n += 1
                    r = await c.post("/v1/decisions", json={"user_id": f"u{wid}-{n % 9}"})
                    seen.append((r.status_code, r.text))
                    if r.status_code != 200:
                        continue
                    did = r.json()["decision_id"]
                    r = await c.post(
                        "/v1/events", json={"decision_id": did, "type": "order", "value": 12.5}
                    )
                    seen.append((r.status_code, r.text))
            return seen

        async def scenario() -> list[tuple[int, str]]:
            until = time.monotonic() + 4.0
            parts = await asyncio.gather(*(worker(s, w, until) for s in servers for w in range(6)))
            return [x for p in parts for x in p]

        seen = asyncio.run(scenario())
    finally:
        for s in servers:
            s.stop()
    codes = {code for code, _ in seen}
    assert codes <= {200, 202}, [x for x in seen if x[0] not in (200, 202)][:3]
    assert not any("locked" in text for _, text in seen)
    assert len(seen) > 200  # both servers did real work under contention
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n_dec = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
    finally:
        con.close()
    assert n_dec == sum(1 for code, text in seen if code == 200)
