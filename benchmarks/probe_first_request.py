"""How long the first decisions of a freshly started ``serve-policy`` take over HTTP.

Starts ``bandit serve-policy --db <temp file> --demo-policy linucb`` (this checkout's code, the
interpreter running the script), waits for ``/readyz``, then times three ``POST /v1/decisions``
one after another, stops the server, and repeats ``--starts`` times. Before the start-up warm-up
(``bandit_engine/service/warmup.py``) the first request paid numba's import and kernel loading.

Usage::

    python benchmarks/probe_first_request.py [--starts 2] [--port 18811]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from bandit_engine.server.supervisor import child_command

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--starts", type=int, default=2)
    p.add_argument("--port", type=int, default=18811)
    args = p.parse_args(argv)
    token = secrets.token_urlsafe(32)
    env = {**os.environ, "BANDIT_API_TOKEN": token, "BANDIT_HMAC_KEY": secrets.token_hex(32)}
    url = f"http://127.0.0.1:{args.port}"
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for start in range(args.starts):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = ["serve-policy", "--db", str(Path(tmp) / "e.sqlite"), "--port", str(args.port)]
            proc = subprocess.Popen(
                child_command([*cmd, "--demo-policy", "linucb"]),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("the server did not become ready")
                    time.sleep(0.1)
                took = []
                with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as c:
                    for user in ("U000001", "U000002", "U000003"):
                        t = time.perf_counter()
                        r = c.post(f"{url}/v1/decisions", json={"user_id": user}, timeout=30)
                        took.append((time.perf_counter() - t) * 1e3)
                        r.raise_for_status()
                print(
                    f"start {start}: first three decisions "
                    + ", ".join(f"{x:.1f} ms" for x in took)
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
