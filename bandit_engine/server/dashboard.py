"""The dashboard: ``/dashboard`` (read role) and ``/dashboard/public`` (differentially private).

Pages and their script are files shipped in the package (``server/static``: HTML, CSS and a small
hand-written SVG chart script; no CDN, so the page works offline). They hold no data and need no
token; the data comes from two JSON endpoints computed by the library only:

* ``GET /dashboard/data`` (the **read** role's token, sent by the page as a bearer header; the page
  keeps it in the tab's ``sessionStorage`` or takes it from the URL fragment, which browsers never
  send to a server): ``report`` is exactly what ``bandit report --json`` prints for the whole log,
  built by :class:`~bandit_engine.reporting.live.LiveReport` (incremental: each refresh reads
  only the decisions, events and rewards logged since the previous one), plus propensity health,
  model versions and the learner's lag. Page views never scan the log: they get the last built
  report; one refresh at a time runs in a thread when it is older than ``dashboard_refresh``
  seconds (the first view after a start waits for the first build, which starts with the server).
* ``GET /dashboard/public/data`` (no token): a differentially private release
  (:func:`~bandit_engine.reporting.dp_report.dp_report`) of counts, rates and uplifts at
  ``public_dp_epsilon``, spent from the log's privacy ledger (total ``dp_budget``). A release is
  made at most once per ``public_dp_refresh`` seconds and cached in memory and in the log's
  ``meta`` (so neither page views nor restarts spend budget again); when the budget is spent, the
  last release stays on show with a note. Disabled (the page says so) unless both are set.

The dashboard reads through its own read-only connection to the log (SQLite readers do not block
the writer; PostgreSQL takes another connection), never on the engine's worker thread, and writes
(the ledger, the cached release) through another short-lived connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from ..errors import ConflictError
from ..reporting.dp_report import dp_report
from ..reporting.live import LiveReport, LiveSnapshot
from ..reporting.report import experiment_of
from ..store import EventStore, open_log
from .settings import ServerSettings
from .worker import EngineWorker

__all__ = ["Dashboard", "install_dashboard"]

logger = logging.getLogger("bandit_engine.server")

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_PUBLIC_META = "dp_public_release"
# the pages load only their own files: no inline script, nothing from elsewhere
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"


def _asset(name: str) -> bytes:
    return resources.files("bandit_engine.server").joinpath("static", name).read_bytes()


def _json(content: Any) -> Response:
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(
        body.encode("utf-8"),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class Dashboard:
    """The live report and the public release of one server (module docstring)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.live = LiveReport()
        self._reader: EventStore | None = None
        self._task: asyncio.Task[LiveSnapshot] | None = None
        self._public_lock = threading.Lock()
        self._public: dict[str, Any] | None = None

    # -- the live report ---------------------------------------------------------------------
    def _log(self) -> EventStore:
        if self._reader is None:
            self._reader = open_log(
                self.settings.db, hmac_key=None, read_only=True, busy_timeout=5.0
            )
        return self._reader

    def _refresh(self) -> LiveSnapshot:
        return self.live.refresh(self._log())

    def start_refresh(self) -> asyncio.Task[LiveSnapshot]:
        """A refresh in a thread, unless one is running (then that one)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._refresh))
        return self._task

    async def snapshot(self) -> LiveSnapshot:
        """The last built snapshot, refreshed in the background when stale (awaited only
        before the first build)."""
        snap = self.live.snapshot
        if snap is None:
            return await self.start_refresh()
        if time.time() - snap.built_at > self.settings.dashboard_refresh:
            self.start_refresh()
        return snap

    async def aclose(self) -> None:
        """Wait for a running refresh (it reads through the connection), then close."""
        if self._task is not None and not self._task.done():
            try:
                await self._task
            except Exception:  # the server is stopping: a failed last refresh changes nothing
                logger.exception("dashboard refresh failed while the server stopped")
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- the public release ------------------------------------------------------------------
    def public(self) -> dict[str, Any]:
        """The cached release, or a new one when the cache is older than the refresh period."""
        eps, budget = self.settings.public_dp_epsilon, self.settings.dp_budget
        if eps is None or budget is None:
            return {
                "enabled": False,
                "message": "the public view is off: start serve-policy with --public-dp-epsilon "
                "and --dp-budget to release differentially private figures here",
            }
        with self._public_lock:
            now = time.time()
            cached = self._public
            if cached is None:
                text = self._log().get_meta(_PUBLIC_META)
                cached = self._public = json.loads(text) if text else None
            if cached is not None and now - cached["released_at"] < self.settings.public_dp_refresh:
                return {"enabled": True, "message": "", **cached}
            snap = self._refresh()  # a release is rare: on the log as it is now
            from ..store.connection import LogConnection
            from ..store.ledger import PrivacyLedger

            writer = open_log(self.settings.db, hmac_key=None, must_exist=True)
            try:
                assert isinstance(writer, LogConnection)  # both backends are
                ledger = PrivacyLedger(writer, total_epsilon=budget)
                shares, types = experiment_of(writer)
                try:
                    rel = dp_report(
                        snap.table,
                        epsilon=eps,
                        cap=self.settings.dp_cap,
                        ledger=ledger,
                        groups=sorted(shares) if shares is not None else None,
                        event_types=sorted({"click", "order", *types}),
                        label="dashboard public view",
                    )
                except ConflictError as exc:
                    if cached is None:
                        return {"enabled": True, "release": None, "message": str(exc)}
                    return {
                        "enabled": True,
                        **cached,
                        "message": f"privacy budget spent: showing the last release ({exc})",
                    }
                fresh = {"released_at": now, "release": json.loads(rel.to_json())}
                writer.set_meta(_PUBLIC_META, json.dumps(fresh))
            finally:
                writer.close()
            self._public = fresh
            return {"enabled": True, "message": "", **fresh}


def install_dashboard(app: FastAPI, settings: ServerSettings, worker: EngineWorker) -> Dashboard:
    """Register the dashboard's routes on ``app`` (see the module docstring)."""
    dash = Dashboard(settings)
    app.state.dashboard = dash
    pages = {"/dashboard": "dashboard.html", "/dashboard/public": "public.html"}
    headers = {"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"}

    def page(name: str) -> Any:
        async def serve() -> Response:
            return Response(_asset(name), media_type="text/html", headers=headers)

        return serve

    for path, name in pages.items():
        app.add_api_route(
            path, page(name), methods=["GET"], include_in_schema=False, name=f"page:{name}"
        )

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        kind = _TYPES.get(name[name.rfind(".") :]) if "." in name else None
        if kind is None or "/" in name or name.startswith("."):
            return Response(b"not found", status_code=404, media_type="text/plain")
        try:
            body = _asset(name)
        except (FileNotFoundError, IsADirectoryError):
            return Response(b"not found", status_code=404, media_type="text/plain")
        return Response(body, media_type=kind, headers={"Cache-Control": "max-age=300"})

    @app.get("/dashboard/data", tags=["operations"])
    async def dashboard_data() -> Response:
        """The dashboard's figures (read role): ``report`` equals ``bandit report --json`` on the
        whole log at the time of ``built_at``; ``health`` (propensity health, model versions),
        ``learner`` (updates learned, pending decisions, oldest pending decision's age)."""
        snap = await dash.snapshot()

        def learner(service: Any) -> dict[str, Any]:
            engine = service.engine
            oldest = engine.attribution.oldest_pending()
            now = engine.clock()
            return {
                "model_id": engine.model_id,
                "n_learned": engine.n_learned,
                "pending": len(engine.attribution),
                "lag_seconds": None if oldest is None else max(0.0, now - oldest),
            }

        return _json(
            {
                "report": snap.report.to_dict(),
                "health": snap.health,
                "learner": await worker.run(learner),
                "built_at": snap.built_at,
                "refresh_seconds": snap.refresh_seconds,
                "decision_seq": snap.decision_seq,
                "event_seq": snap.event_seq,
            }
        )

    @app.get("/dashboard/public/data", tags=["operations"])
    async def public_data() -> Response:
        """The public view's differentially private release (no token; cached, see the module
        docstring)."""
        return _json(await asyncio.to_thread(dash.public))

    return dash
