"""Drive ``bandit serve-policy`` with a plain HTTP client: decisions -> events -> offline evaluation.

Nothing here imports bandit-engine: this is what a service in any language does (JSON over HTTP with
a bearer token). Against a running server::

    export BANDIT_API_TOKEN=...            # the server's token
    python examples/http_client_end_to_end.py --url http://127.0.0.1:8080

or let the example start a demo server of its own on a free loopback port (throw-away token and
HMAC key, event log ``events.sqlite`` in the current folder unless ``--db``)::

    python examples/http_client_end_to_end.py --spawn

At the end it prints the command that evaluates policies offline on the resulting event log.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["Client", "main"]


class Client:
    """A minimal JSON client for the policy server (urllib only)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 4xx bodies name the field that was wrong
            return exc.code, json.loads(exc.read() or b"{}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(db: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ, BANDIT_API_TOKEN=token, BANDIT_HMAC_KEY=secrets.token_hex(32))
    launch = "import sys; from bandit_engine.cli import app; sys.argv[0] = 'bandit'; app()"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            launch,
            "serve-policy",
            "--db",
            str(db),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")


def run(client: Client, n: int, seed: int) -> dict[str, Any]:
    """``n`` visits: ask for a decision, then (seeded coin) click, sometimes order."""
    rng = random.Random(seed)  # a private generator: same seed, same visits
    out: dict[str, Any] = {"decisions": 0, "no_bundle": 0, "events": {}, "first": None}
    for i in range(n):
        user = f"U{rng.randint(1, 2000):06d}"
        status, d = client.call("POST", "/v1/decisions", {"user_id": user})
        if status == 422 and d.get("field") == "candidates":  # nothing eligible for them now
            out["no_bundle"] += 1
            continue
        if status != 200:
            raise SystemExit(f"decision failed: {status} {d}")
        out["decisions"] += 1
        out["first"] = out["first"] or d["decision_id"]
        if rng.random() < 0.3:
            event = {"decision_id": d["decision_id"], "type": "click", "event_id": f"click-{i}"}
            for _ in range(2):  # a retried post: the second copy is recognised as a duplicate
                _, e = client.call("POST", "/v1/events", event)
                out["events"][e["status"]] = out["events"].get(e["status"], 0) + 1
            if rng.random() < 0.3:
                order = {
                    "decision_id": d["decision_id"],
                    "type": "order",
                    "value": round(rng.uniform(20, 200), 2),
                    "event_id": f"order-{i}",
                }
                _, e = client.call("POST", "/v1/events", order)
                out["events"][e["status"]] = out["events"].get(e["status"], 0) + 1
    if out["first"] is not None:
        _, out["first_record"] = client.call("GET", f"/v1/decisions/{out['first']}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="Plain HTTP client for bandit serve-policy.")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server URL (without --spawn)")
    p.add_argument("--spawn", action="store_true", help="start a demo server for this run")
    p.add_argument("--db", default="events.sqlite", help="event log of the spawned server")
    p.add_argument("--n", type=int, default=100, help="visits")
    p.add_argument("--seed", type=int, default=0, help="seed of the visits")
    args = p.parse_args(argv)
    proc = None
    db = Path(args.db)
    if args.spawn:
        token = secrets.token_urlsafe(32)
        proc, url = _spawn(db, token)
    else:
        token = os.environ.get("BANDIT_API_TOKEN", "")
        if not token:
            raise SystemExit("set BANDIT_API_TOKEN to the server's token (or use --spawn)")
        url = args.url
    try:
        result = run(Client(url, token), args.n, args.seed)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    record = result.get("first_record") or {}
    print(
        f"{result['decisions']} decisions ({result['no_bundle']} visitors had no eligible "
        f"bundle), events: {result['events']}"
    )
    if record:
        print(
            f"first decision {record['decision_id']}: bundle {record['bundle_id']}, propensity "
            f"{record['propensity']:.3f}, reward status {record['reward_status']}, "
            f"{len(record['events'])} events"
        )
    where = str(db) if args.spawn else "<the server's --db file>"
    result["evaluate_command"] = f"bandit evaluate --log {where}"
    print("evaluate policies offline on this log with:")
    print(f"    {result['evaluate_command']}")
    return result


if __name__ == "__main__":
    main()
