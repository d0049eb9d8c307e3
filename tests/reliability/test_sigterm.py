"""SIGTERM lets in-flight requests finish (and writes a final checkpoint)."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from reliability.engine_factory import save_small_engine
from reliability.proc import TOKEN, ServerProcess


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    model = save_small_engine(tmp_path / "model.bandit", window=60.0)
    db = tmp_path / "events.sqlite"
    server = ServerProcess(model=model, db=db, log_path=tmp_path / "server.log").start()
    n = 8
    socks = []
    try:
        for i in range(n):
            body = json.dumps({"user_id": f"u{i}", "decision_id": f"inflight-{i}"}).encode()
            head = (
                f"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(head + body[:5])  # the request has started, its body is not complete
            socks.append((s, body[5:]))
        time.sleep(0.5)  # let the server parse every request's headers
        server.terminate()
        time.sleep(0.5)  # the server is now shutting down, with 8 requests in flight
        assert server.proc is not None and server.proc.poll() is None
        results = []
        for s, rest in socks:
            s.sendall(rest)
            results.append(_read_response(s))
    finally:
        for s, _ in socks:
            s.close()
    code = server.wait(60)
    assert code == 0  # a graceful stop is a clean exit
    assert [status for status, _ in results] == [200] * n, results
    assert {json.loads(b)["decision_id"] for _, b in results} == {f"inflight-{i}" for i in range(n)}
    # The main file alone holds every acknowledged write: a backup that copies only events.sqlite
    # (or a power loss right after the stop) loses nothing.
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copy" / "events.sqlite"
    alone.parent.mkdir()
    shutil.copyfile(db, alone)
    con = sqlite3.connect(alone)
    try:
        stored = {r[0] for r in con.execute("SELECT decision_id FROM decisions")}
    finally:
        con.close()
    assert stored == {f"inflight-{i}" for i in range(n)}
    assert list((tmp_path / "events.sqlite.checkpoints").glob("checkpoint-*.bandit"))
    assert "Finished server process" in (tmp_path / "server.log").read_text()


@pytest.mark.slow
def test_sigterm_under_load_leaves_every_acknowledged_write_in_the_main_file(
    tmp_path: Path,
) -> None:
    import threading

    import httpx

    model = save_small_engine(tmp_path / "model.bandit", window=60.0)
    db = tmp_path / "events.sqlite"
    server = ServerProcess(model=model, db=db, log_path=tmp_path / "server.log").start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
            i = 0
            while not stop.is_set():
                did = f"load-{worker}-{i}"
                i += 1
                try:
                    r = c.post("/v1/decisions", json={"user_id": f"u{i % 50}", "decision_id": did})
                except httpx.HTTPError:
                    continue  # refused while stopping: not acknowledged
                if r.status_code == 200:
                    with lock:
                        acknowledged.append(did)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)  # under load
    server.terminate()
    code = server.wait(60)
    stop.set()
    for t in threads:
        t.join(30)
    assert code == 0
    assert len(acknowledged) > 50
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copy" / "events.sqlite"
    alone.parent.mkdir()
    shutil.copyfile(db, alone)  # the main file alone, as a backup that skips -wal would
    con = sqlite3.connect(alone)
    try:
        stored = {r[0] for r in con.execute("SELECT decision_id FROM decisions")}
    finally:
        con.close()
    assert set(acknowledged) <= stored
