"""The engine embedded in a small web app, without the policy server (the in-process route).

A shop page asks the engine for a bundle inside its own request handler, logs the decision to the
same SQLite event log ``bandit serve-policy`` would use, and reports clicks from another route. No
HTTP hop to a decision service, no token: the app owns the engine.

Run it::

    python examples/embed_web_app.py            # starts the app, simulates visitors, prints a summary
    python examples/embed_web_app.py --serve    # just serve it on http://127.0.0.1:8000

Notes: the handlers are ``async def``, so they all run on the event loop thread, one at a time; that
is what keeps the engine (not thread-safe) safe here without a lock. Each decision is one SQLite
commit. For more traffic, or several apps sharing one learner, use ``bandit serve-policy``: it runs
the engine on a worker thread and commits requests in groups.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from bandit_engine.demo import demo_engine
from bandit_engine.engine import Engine
from bandit_engine.errors import BanditError
from bandit_engine.store import EventLog

__all__ = ["build_app", "main"]


def build_app(engine: Engine, log: EventLog) -> FastAPI:
    """A shop with two routes: ``GET /offer`` (a bundle for a user) and ``POST /click``."""
    app = FastAPI(title="shop with an embedded bandit")

    @app.get("/offer")
    async def offer(user: str) -> Any:
        try:
            t = engine.now()
            d = engine.decide(user, now=t)
        except BanditError as exc:  # for example: no bundle is eligible in the user's city now
            return JSONResponse(exc.to_dict(), status_code=422)
        x = engine.context(user, now=t)  # the context the policy saw, kept for offline evaluation
        z = engine.catalog.features([d.bundle_id])[0]
        log.log_decision(d, user_id=user, x=x, z=z, model_id=engine.model_id)
        bundle = engine.catalog.bundle(d.bundle_id)
        html = (
            f"<h1>Today for you</h1><p>{bundle['deal']['cuisine']} deal {d.deal_id} "
            f"+ {bundle['course']['topic']} course {d.course_id}</p>"
            f"<form method=post action='/click?decision_id={d.decision_id}'>"
            "<button>Take it</button></form>"
        )
        return HTMLResponse(html, headers={"X-Decision-Id": d.decision_id})

    @app.post("/click")
    async def click(decision_id: str) -> Any:
        try:
            t = engine.now()
            status = engine.report(decision_id, "click", at=t)
        except BanditError as exc:
            return JSONResponse(exc.to_dict(), status_code=404)
        log.log_event(decision_id, "click", 0.0, t, None, status)
        return {"decision_id": decision_id, "status": status}

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _simulate(port: int, n_visits: int, seed: int) -> dict[str, int]:
    """Visitors open the page; some click (a seeded coin, biased towards cheap deals)."""
    rng = np.random.default_rng(seed)
    out = {"offers": 0, "clicks": 0, "refused": 0}
    base = f"http://127.0.0.1:{port}"
    for i in range(n_visits):
        user = f"U{int(rng.integers(1, 2001)):06d}"
        try:
            with urllib.request.urlopen(f"{base}/offer?user={user}", timeout=10) as r:
                decision_id = r.headers["X-Decision-Id"]
                page = r.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code != 422:
                raise
            out["refused"] += 1
            continue
        out["offers"] += 1
        if rng.random() < (0.5 if "coffee" in page or i % 3 == 0 else 0.15):
            req = urllib.request.Request(
                f"{base}/click?decision_id={decision_id}", data=b"", method="POST"
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                json.loads(r.read())
            out["clicks"] += 1
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="A web app with the bandit engine embedded.")
    p.add_argument("--db", default=None, help="event log (default: a temporary file)")
    p.add_argument("--visits", type=int, default=60, help="simulated visits")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo engine and the visitors")
    p.add_argument("--serve", action="store_true", help="serve on 127.0.0.1:8000 until Ctrl+C")
    args = p.parse_args(argv)
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="shop-")) / "events.sqlite"
    engine = demo_engine(seed=args.seed)
    # an app that embeds the engine keeps its own HMAC key (here a throw-away one for the demo)
    with EventLog(db, hmac_key=secrets.token_bytes(32)) as log:
        app = build_app(engine, log)
        if args.serve:
            uvicorn.run(app, host="127.0.0.1", port=8000)
            return {}
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            counts = _simulate(port, args.visits, args.seed)
        finally:
            server.should_exit = True
            thread.join(10)
        frame = log.decisions_frame()
    summary = {
        **counts,
        "logged_decisions": len(frame),
        "logged_clicks": int(frame["click"].sum()) if len(frame) else 0,
        "db": str(db),
    }
    print(
        f"{summary['offers']} offers, {summary['clicks']} clicks, {summary['refused']} visitors with "
        f"no eligible bundle; event log {db}: {summary['logged_decisions']} decisions, "
        f"{summary['logged_clicks']} clicks"
    )
    return summary


if __name__ == "__main__":
    main()
