"""Drive ``bandit serve-policy`` with a plain HTTP client: decisions -> events -> offline evaluation.

The client part imports nothing from bandit-engine: this is what a service in any language does (JSON
over HTTP with a bearer token). Against a running server::

    export BANDIT_API_TOKEN=...            # the server's token
    python examples/http_client_end_to_end.py --url http://127.0.0.1:8080

or let the example run the whole loop on its own (``--spawn``): it writes a demo model whose
attribution window is a few seconds (this setup step uses the library), starts ``bandit
serve-policy`` on it on a free loopback port (throw-away token and HMAC key, event log
``events.sqlite`` in the current folder unless ``--db``), sends the visits, waits until every
decision's window has closed and the server has learned it, stops the server, and runs ``bandit
evaluate`` on the event log it wrote::

    python examples/http_client_end_to_end.py --spawn
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


def _bandit(*args: str) -> list[str]:
    """The ``bandit`` command of this interpreter's installation."""
    launch = "import sys; from bandit_engine.cli import app; sys.argv[0] = 'bandit'; app()"
    return [sys.executable, "-c", launch, *args]


def write_demo_model(path: Path, window: float) -> None:
    """Setup only (``--spawn``): the demo engine with a short attribution window, saved to ``path``."""
    from dataclasses import replace

    from bandit_engine.demo import DEMO_REWARDS, build_engine, demo_world
    from bandit_engine.policies import LinUCB

    engine = build_engine(
        demo_world(0),
        LinUCB(alpha=0.1, epsilon=0.1, seed=0),  # epsilon: every eligible bundle has support
        rewards=replace(DEMO_REWARDS, window=window),
        model_id="http-example",
    )
    engine.save(path)


def _spawn(db: Path, model: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ, BANDIT_API_TOKEN=token, BANDIT_HMAC_KEY=secrets.token_hex(32))
    proc = subprocess.Popen(
        _bandit(
            "serve-policy",
            "--model",
            str(model),
            "--db",
            str(db),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ),
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
    out: dict[str, Any] = {
        "decisions": 0,
        "no_bundle": 0,
        "events": {},
        "first": None,
        "last": None,
    }
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
        out["last"] = d["decision_id"]
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


def wait_until_learned(client: Client, decision_id: str, timeout: float) -> str:
    """Poll one decision until its reward status is final (its window closed and was learned)."""
    deadline = time.monotonic() + timeout
    status = "pending"
    while time.monotonic() < deadline:
        _, record = client.call("GET", f"/v1/decisions/{decision_id}")
        status = str(record.get("reward_status", "pending"))
        if status != "pending":
            break
        time.sleep(0.5)
    return status


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="Plain HTTP client for bandit serve-policy.")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server URL (without --spawn)")
    p.add_argument("--spawn", action="store_true", help="run the whole loop on a demo server")
    p.add_argument("--db", default="events.sqlite", help="event log of the spawned server")
    p.add_argument("--window", type=float, default=3.0, help="attribution window (s), --spawn")
    p.add_argument("--n", type=int, default=100, help="visits")
    p.add_argument("--seed", type=int, default=0, help="seed of the visits")
    args = p.parse_args(argv)
    proc = None
    db = Path(args.db)
    model = db.with_name(db.name + ".model")
    if args.spawn:
        token = secrets.token_urlsafe(32)
        write_demo_model(model, args.window)
        proc, url = _spawn(db, model, token)
    else:
        token = os.environ.get("BANDIT_API_TOKEN", "")
        if not token:
            raise SystemExit("set BANDIT_API_TOKEN to the server's token (or use --spawn)")
        url = args.url
    client = Client(url, token)
    try:
        result = run(client, args.n, args.seed)
        if proc is not None and result.get("last") is not None:
            # the last decision closes last: once it is final, every decision was learned
            result["last_status"] = wait_until_learned(client, result["last"], args.window + 30)
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
            f"{record['propensity']:.3f}, {len(record['events'])} events"
        )
    if proc is None:
        print("evaluate a saved engine offline on the server's event log with:")
        print("    bandit evaluate <the server's --db file> --model <a saved engine file>")
        return result
    print(f"last decision's reward status after its window: {result.get('last_status')}")
    command = ["evaluate", str(db), "--model", str(model), "--estimators", "ips,snips,dm,dr"]
    print("$ bandit " + " ".join(command))
    done = subprocess.run(_bandit(*command), capture_output=True, text=True, check=False)
    print(done.stdout + done.stderr, end="")
    result["evaluate_exit_code"] = done.returncode
    result["evaluate_output"] = done.stdout
    return result


if __name__ == "__main__":
    sys.exit(0 if main().get("evaluate_exit_code", 0) == 0 else 1)
