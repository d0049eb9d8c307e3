"""kill -9 the server repeatedly under load: no acknowledged decision or event is lost.

A decision counts as acknowledged when the client got its 200, an event when it got its 202; the
server only answers after the SQLite commit that holds the write returned, and a committed WAL
transaction survives the death of the process in every ``synchronous`` mode. Each restart replays
the journal (which also checks every replayed decision chooses its logged bundle).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from reliability.engine_factory import save_small_engine
from reliability.proc import TOKEN, ServerProcess

CYCLES = 4
LOAD_SECONDS = 1.2
WORKERS = 12


async def _load(
    url_box: list[str],
    stop: asyncio.Event,
    acked_dec: set[str],
    acked_ev: set[tuple[str, str]],
    server_errors: list[str],
    wid: int,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=10.0) as client:
        n = 0
        while not stop.is_set():
            n += 1
            did = f"w{wid}-{n}"
            try:
                r = await client.post(
                    f"{url_box[0]}/v1/decisions",
                    json={"user_id": f"user{n % 40}", "decision_id": did},
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.05)  # the server is down: try again later
                continue
            if r.status_code >= 500:
                server_errors.append(f"{r.status_code} {r.text}")
            if r.status_code != 200:
                continue
            acked_dec.add(did)
            eid = f"ev-{did}"
            try:
                r = await client.post(
                    f"{url_box[0]}/v1/events",
                    json={"decision_id": did, "type": "click", "event_id": eid},
                )
            except httpx.HTTPError:
                continue
            if r.status_code >= 500:
                server_errors.append(f"{r.status_code} {r.text}")
            if r.status_code == 202:
                acked_ev.add((did, eid))


async def _scenario(server: ServerProcess) -> tuple[set[str], set[tuple[str, str]], list[str]]:
    acked_dec: set[str] = set()
    acked_ev: set[tuple[str, str]] = set()
    errors: list[str] = []
    stop = asyncio.Event()
    box = [server.url]
    tasks = [
        asyncio.create_task(_load(box, stop, acked_dec, acked_ev, errors, w))
        for w in range(WORKERS)
    ]
    for _ in range(CYCLES):
        await asyncio.sleep(LOAD_SECONDS)
        await asyncio.to_thread(server.kill)  # SIGKILL while requests are in flight
        await asyncio.to_thread(server.start)
    await asyncio.sleep(LOAD_SECONDS)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(server.kill)
    return acked_dec, acked_ev, errors


@pytest.mark.slow
def test_kill9_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    model = save_small_engine(tmp_path / "model.bandit", window=60.0)
    db = tmp_path / "events.sqlite"
    server = ServerProcess(
        model=model, db=db, log_path=tmp_path / "server.log", extra=["--checkpoint-every", "150"]
    ).start()  # checkpoints get written (and killed mid-write) too
    acked_dec, acked_ev, errors = asyncio.run(_scenario(server))
    assert not errors, errors[:5]
    # enough traffic went through each life of the server to make the check meaningful
    assert len(acked_dec) > 200 and len(acked_ev) > 200
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored_dec = {r[0] for r in con.execute("SELECT decision_id FROM decisions")}
        stored_ev = {tuple(r) for r in con.execute("SELECT decision_id, event_id FROM events")}
        n_ev_rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()
    assert acked_dec <= stored_dec, sorted(acked_dec - stored_dec)[:5]
    assert acked_ev <= stored_ev, sorted(acked_ev - stored_ev)[:5]
    assert n_ev_rows == len(stored_ev)  # every (decision, event id) stored once
    log = (tmp_path / "server.log").read_text()
    assert log.count("restored") == CYCLES + 1  # every restart replayed the journal cleanly
