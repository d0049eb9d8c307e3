"""``bandit serve-policy --workers N``: a supervisor that runs the split roles as processes.

The supervisor starts N decision servers (``serve-policy --role decide``, each binding the same
port with ``SO_REUSEPORT``, so the kernel spreads new connections over them) and, unless told
otherwise, one learner (``bandit learn``). It serves nothing itself. A child that exits without
being asked (a crash, kill -9, the OOM killer) is started again after ``restart_delay`` seconds;
SIGTERM / SIGINT to the supervisor is passed to every child (each stops gracefully: decision
servers finish their requests and commit, the learner publishes a last version and releases its
lease), and the supervisor exits once they have, killing any still running after
``stop_timeout`` seconds.

Why processes started by a supervisor rather than uvicorn's ``--workers``: uvicorn's workers
import the app from a module path and cannot be handed the settings object the server is built
from; each child here is the ordinary command with its ordinary options, so a decision server run
by hand, under systemd or in a container is the same program (``examples/deploy/``).
SO_REUSEPORT is Linux (3.9+) and BSD; elsewhere run one decision server per port behind a
balancer.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

__all__ = ["LAUNCH", "Child", "child_command", "reuse_port_socket", "supervise"]

logger = logging.getLogger("bandit_engine.supervisor")

#: how a child runs the CLI with the interpreter of the supervisor
LAUNCH = "import sys; from bandit_engine.cli import app; sys.argv[0] = 'bandit'; app()"


def child_command(args: Sequence[str]) -> list[str]:
    """The command line of a child running ``bandit <args>``."""
    return [sys.executable, "-c", LAUNCH, *args]


@dataclass
class Child:
    """One supervised process: its name, command and current process."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.started_at = time.monotonic()
        logger.info("started %s (pid %d)", self.name, self.process.pid)


def supervise(
    children: Sequence[Child],
    *,
    restart_delay: float = 0.5,
    stop_timeout: float = 40.0,
    poll: float = 0.2,
) -> int:
    """Run ``children`` until SIGTERM / SIGINT (module docstring); returns the exit code (0)."""
    stopping = False

    def ask_stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, ask_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        while not stopping:
            time.sleep(poll)
            for child in children:
                proc = child.process
                if proc is None or proc.poll() is None or stopping:
                    continue
                logger.warning(
                    "%s (pid %d) exited with %s; restarting in %.1f s",
                    child.name,
                    proc.pid,
                    proc.returncode,
                    restart_delay,
                )
                time.sleep(restart_delay)
                child.restarts += 1
                if not stopping:
                    child.start()
        for child in children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        for child in children:
            proc = child.process
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("%s (pid %d) did not stop in time; killing it", child.name, proc.pid)
                proc.kill()
                proc.wait()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``(host, port)`` with ``SO_REUSEPORT``: every decision server
    binds its own, and the kernel spreads new connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
