"""Limits before authentication, against a real ``bandit serve-policy`` process on loopback:
header size, header read timeout and a connection cap, all met by clients that send no token."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from reliability.engine_factory import save_small_engine
from reliability.proc import TOKEN, ServerProcess


def _status(sock: socket.socket) -> int | None:
    """The status of the response on ``sock`` (None when the server closed without one)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (reading to the end)."""
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, TimeoutError):
        return False
    return True


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    model = save_small_engine(tmp_path / "model.bandit", window=60.0)
    extra = ["--header-timeout", "1", "--max-connections", "8", "--max-header-bytes", "8192"]
    proc = ServerProcess(
        model=model, db=tmp_path / "events.sqlite", log_path=tmp_path / "server.log", extra=extra
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
def test_oversized_headers_are_refused_before_auth(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n")
        try:  # 1 MB of headers: refused long before they are all sent
            for _ in range(1024):
                s.sendall(b"X-Pad: " + b"a" * 1016 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _status(s) in (431, None)
    r = httpx.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200  # still serving
    log = Path(server.log_path).read_text()
    assert "Traceback" not in log


@pytest.mark.slow
def test_a_request_head_that_never_completes_is_closed(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        start = time.monotonic()
        status = _status(s)
        assert status in (408, None)
        assert _closed(s)
        assert time.monotonic() - start < 8  # the 1 s header timeout, with a margin for load
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        start = time.monotonic()  # a silent connection is closed too
        assert _status(s) in (408, None) and time.monotonic() - start < 8


@pytest.mark.slow
def test_connections_over_the_cap_get_503_and_served_ones_go_on(server: ServerProcess) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
            assert _status(extra) == 503
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    r = httpx.post(
        f"{server.url}/v1/decisions",
        json={"user_id": "u1"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200
