"""Start and stop real ``bandit serve-policy`` processes on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["HMAC_KEY", "TOKEN", "ServerProcess", "free_port"]

TOKEN = "reliability-token-0123456789abcdef"
HMAC_KEY = "reliability-hmac-key-0123456789abcdef"
_LAUNCH = "import sys; from bandit_engine.cli import app; sys.argv[0] = 'bandit'; app()"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One ``bandit serve-policy`` process; output goes to ``log_path`` (appended)."""

    def __init__(
        self,
        *,
        model: Path,
        db: Path,
        log_path: Path,
        port: int | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.db = db
        self.log_path = log_path
        self.port = port if port is not None else free_port()
        self.extra = extra or []
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = dict(os.environ)
        env.update(
            {"BANDIT_API_TOKEN": TOKEN, "BANDIT_HMAC_KEY": HMAC_KEY, "PYTHONUNBUFFERED": "1"}
        )
        if self.env:
            env.update(self.env)
        cmd = [
            sys.executable,
            "-c",
            _LAUNCH,
            "serve-policy",
            "--model",
            str(self.model),
            "--db",
            str(self.db),
            "--port",
            str(self.port),
            *self.extra,
        ]
        self._out = open(self.log_path, "ab")  # noqa: SIM115  (closed in wait/stop)
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no final checkpoint."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait(10.0)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._out is not None:
            self._out.close()
            self._out = None
        return code

    def stop(self) -> int:
        self.terminate()
        return self.wait()
