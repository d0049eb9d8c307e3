"""The split roles over HTTP: decision servers that load model versions, and the learner's
metrics endpoint.

A decision server (``bandit serve-policy --role decide``, or each of ``--workers N``) is the same
FastAPI app as the single process (:func:`~bandit_engine.server.app.create_app`) over a
:class:`DecisionWorker`: the group-commit worker of :mod:`~bandit_engine.server.worker` with a
:class:`~bandit_engine.service.decider.DecisionService` in place of the learning engine, no
checkpoints (the state that matters is the log and the published versions), and a refresh task
that loads the newest published version every ``refresh_interval`` seconds (the bytes are read
and decoded in a helper thread; the swap happens between two jobs on the event loop).

What a decision server does when the event log cannot be reached (a PostgreSQL server down, a
SQLite file locked or unwritable past ``busy_timeout``): the job that needs the log fails with
:class:`~bandit_engine.errors.StoreBusyError`, the batch is rolled back and every request in it
gets 503 with ``Retry-After`` (:mod:`~bandit_engine.server.errors`); no decision is answered that
was not committed to the log. The server keeps its engine (it holds nothing the log needs), so
the first request after the database comes back is served.

Metrics (``GET /metrics``, besides the single process's): ``bandit_model_version``,
``bandit_model_age_seconds`` (now minus the version's publication time), ``bandit_model_loads_total``,
``bandit_commits_waited_total`` (group commits that found another process holding SQLite's write
lock and waited for it in a helper thread; the others are written on the event loop) and
``bandit_server_index``. The learner's endpoint (:func:`serve_learner_metrics`) reports
``bandit_learner_lag_entries`` (journal head minus the learner's position), its position, the
version it published last and its age, pending decisions, and whether it holds the role.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from .._version import __version__
from ..engine import Engine
from ..errors import BanditError, StoreBusyError
from ..fileformat import load_state
from ..rules import Rules
from ..service import Checkpointer
from ..service.decider import DecisionService, QueuedWrite
from ..service.learner import Learner
from ..service.warmup import warm_up
from ..store import EventStore, open_log
from ..store.versions import VersionInfo
from .app import base_engine_factory, create_app
from .errors import ServiceUnavailableError
from .metrics import Metrics
from .settings import ServerSettings
from .worker import EngineWorker, Job

__all__ = ["DecisionWorker", "learner_metrics", "open_decision_server", "serve_learner_metrics"]

logger = logging.getLogger("bandit_engine.server")


def _engine_of(data: bytes, version: int) -> Engine:
    return Engine.from_state(load_state(data, f"model version {version}"))


class DecisionWorker(EngineWorker):
    """The worker of a decision server (module docstring).

    Parameters
    ----------
    service
        The decision service of the version loaded at start.
    reader
        A read-only connection to the same log, for version checks and loads off the event loop.
    info
        The loaded version (``None`` when serving the base engine as version 0).
    """

    def __init__(
        self,
        service: DecisionService,
        *,
        reader: EventStore,
        info: VersionInfo | None,
        settings: ServerSettings,
        metrics: Metrics,
        clock: Callable[[], float] | None = None,
    ) -> None:
        service.checkpoints = Checkpointer(settings.checkpoints)  # never written (see below)
        super().__init__(
            service,
            rebuild=lambda: self.service,
            metrics=metrics,
            max_batch=settings.max_batch,
            max_delay=settings.commit_delay,
            advance_interval=settings.advance_interval,
            checkpoint_every=1 << 62,
            checkpoint_seconds=math.inf,
            fork_checkpoints=False,
        )
        self.reader = reader
        self.info = info
        self.inflight = service.inflight
        # the settings' rules, applied again over each loaded version
        self.rules = Rules.from_toml(Path(settings.rules)) if settings.rules is not None else None
        self._batch: list[tuple[list[QueuedWrite], asyncio.Future[None]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        # the batch's flush is looked at once per loop iteration (see run)
        self._flush_due: asyncio.Handle | None = None
        self._batch_start = 0.0
        self._seen = 0
        # commits that do not wait on the disk run on the loop when the write lock is free
        self._inline = not self.log.commit_waits
        self.refresh_interval = settings.refresh_interval
        self.server_index = settings.server_index
        self.clock = clock
        self._refresher: asyncio.Task[None] | None = None
        metrics.gauge(
            "bandit_model_version",
            "Model version this decision server decides with (0: the base engine).",
            lambda: float(self.current.version),
        )
        metrics.gauge(
            "bandit_model_age_seconds",
            "Seconds since the version this server decides with was published.",
            lambda: self._now() - self.info.created_at if self.info is not None else math.nan,
        )
        metrics.gauge(
            "bandit_server_index", "This decision server's index.", lambda: float(self.server_index)
        )
        metrics._help["bandit_model_loads_total"] = ("counter", "Model versions loaded.")
        metrics._help["bandit_commits_waited_total"] = (
            "counter",
            "Group commits that found the write lock held by another process (written from a "
            "helper thread once it was free).",
        )

    def _now(self) -> float:
        return self.clock() if self.clock is not None else time.time()

    @property
    def current(self) -> DecisionService:
        service = self.service
        assert isinstance(service, DecisionService)
        return service

    # a decision server holds nothing the log needs: no checkpoints, and a failed batch keeps the
    # engine (the next request after the database is back is served)
    def _maybe_checkpoint(self) -> None:
        return None

    def checkpoint(self) -> None:
        return None

    def start(self) -> None:
        super().start()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._refresher is None:
            self._refresher = loop.create_task(self._refresh_loop())

    async def stop(self, *, checkpoint: bool = True) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        while self._flush_task is not None or self._batch:
            if self._flush_task is None:
                self._start_flush()
            if self._flush_task is not None:
                await asyncio.shield(self._flush_task)
        await super().stop(checkpoint=False)

    # -- write-behind group commit -----------------------------------------------------------
    async def run(self, job: Job) -> Any:
        """Run ``job`` outside any write transaction, its writes collected; return its result
        once a group commit holding them returned (a refused write raises for its request only;
        a failed commit raises :class:`~bandit_engine.errors.StoreBusyError` for every request of
        the batch: 503, nothing of it written)."""
        if not self._healthy:
            raise ServiceUnavailableError("the engine is not serving; retry")
        service = self.current
        writes: list[QueuedWrite] = []
        service.outbox = writes
        try:
            result = job(service)
        finally:
            service.outbox = None
        if not writes:
            return result
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.inflight.hold(writes)
        self._batch.append((writes, fut))
        if self._flush_task is None:
            if len(self._batch) >= self.max_batch:
                self._start_flush()
            elif self._flush_due is None:
                # as the single process commits (worker.py): once a loop iteration passed in
                # which no request joined the batch, or ``max_delay`` after its first, whichever
                # comes first; a fixed timer made every decision wait ``max_delay`` (p50 2-3 ms
                # against 0.7-1 ms for one process)
                self._batch_start = time.monotonic()
                self._seen = len(self._batch)
                self._flush_due = loop.call_soon(self._maybe_flush)
        await fut
        return result

    def _maybe_flush(self) -> None:
        self._flush_due = None
        if self._flush_task is not None or not self._batch:
            return  # the running flush starts the next one when it ends
        young = time.monotonic() - self._batch_start < self.max_delay
        if young and len(self._batch) != self._seen:  # more are probably on the way
            self._seen = len(self._batch)
            self._flush_due = asyncio.get_running_loop().call_soon(self._maybe_flush)
            return
        self._start_flush()

    def _start_flush(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        if self._flush_task is not None or not self._batch:
            return
        batch, self._batch = self._batch, []
        if self._inline:
            # the write lock is free (the usual case): the batch's inserts and commit take
            # 0.1-0.5 ms under NORMAL / OFF, less than handing them to a thread and back costs
            # (a round trip of asyncio.to_thread alone is ~55 us of CPU), so they run here, as
            # the single process commits; only when another process holds the lock does the
            # batch wait for it in a helper thread, where waiting does not stop the loop
            try:
                free = self.log.begin_if_free()
            except Exception:
                free = False  # the helper thread's attempt reports the failure
            if free:
                try:
                    errors = self._writes(batch)
                    self.log.commit()
                except Exception as exc:
                    self.log.rollback()
                    self._settle(batch, exc, [])
                else:
                    self._settle(batch, None, errors)
                return
            self.metrics.inc("bandit_commits_waited_total")
        self._flush_task = asyncio.get_running_loop().create_task(self._flush(batch))

    def _writes(
        self, batch: list[tuple[list[QueuedWrite], asyncio.Future[None]]]
    ) -> list[BaseException | None]:
        """Every write of the batch, in the transaction the caller opened; a request's own
        refusal (a reused id) is its error, a failing log raises for the whole batch."""
        errors: list[BaseException | None] = []
        for writes, _ in batch:
            error: BaseException | None = None
            for w in writes:
                try:
                    w.run()
                except StoreBusyError:
                    raise
                except BanditError as exc:  # this request's refusal (a reused id)
                    error = exc
            errors.append(error)
        return errors

    def _write_batch(
        self, batch: list[tuple[list[QueuedWrite], asyncio.Future[None]]]
    ) -> list[BaseException | None]:
        """In a helper thread: every write of the batch in one transaction."""
        with self.log.transaction():
            return self._writes(batch)

    async def _flush(self, batch: list[tuple[list[QueuedWrite], asyncio.Future[None]]]) -> None:
        try:
            errors = await asyncio.to_thread(self._write_batch, batch)
        except Exception as exc:
            self._settle(batch, exc, [])
        else:
            self._settle(batch, None, errors)

    def _settle(
        self,
        batch: list[tuple[list[QueuedWrite], asyncio.Future[None]]],
        failed: Exception | None,
        errors: list[BaseException | None],
    ) -> None:
        """Answer the batch's requests (after its commit returned, or failed), then start the
        next batch if one queued meanwhile."""
        try:
            if failed is not None:
                self._write_error = str(failed)
                failure: BaseException = (
                    failed
                    if isinstance(failed, StoreBusyError)
                    else ServiceUnavailableError("the event log could not commit; retry")
                )
                if not isinstance(failed, StoreBusyError):
                    logger.error("group commit failed: %s", failed, exc_info=failed)
                for _, fut in batch:
                    self._resolve(fut, failure)
            else:
                self._write_error = None
                self.metrics.inc("bandit_commits_total")
                for (_, fut), error in zip(batch, errors, strict=True):
                    self._resolve(fut, error)
        finally:
            for writes, _ in batch:
                self.inflight.release(writes)
            self._flush_task = None
            if self._batch:  # what queued while this one was writing
                self._start_flush()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: keep serving what we have
                logger.warning("model version check failed: %s", exc)

    async def refresh(self) -> bool:
        """Load the newest published version if it is newer than ours; ``True`` when swapped."""
        info = await asyncio.to_thread(self.reader.latest_version)
        if info is None or info.version <= self.current.version:
            return False
        data = await asyncio.to_thread(self.reader.version_state, info.version)
        if data is None:  # pruned between the two reads: the next check finds a newer one
            return False
        engine = await asyncio.to_thread(_engine_of, data, info.version)
        if self.clock is not None:
            engine.clock = self.clock
        # the new engine's lazy caches are built here, not by the first request it serves (the
        # process's kernels were loaded at start: no throwaway policy per version)
        await asyncio.to_thread(partial(warm_up, engine, kernels=False))
        service = DecisionService(
            engine,
            self.log,
            version=info.version,
            server_index=self.server_index,
            reads=self.current.reads,
            inflight=self.inflight,
            behaviour=self.current.behaviour,  # its cache outlives the version
        )
        service.checkpoints = self.checkpointer
        if self.rules is not None:
            service.use_rules(self.rules)
        self.service, self.info = service, info  # between jobs: the loop runs one at a time
        self.metrics.inc("bandit_model_loads_total")
        logger.info("decision server %d loaded model version %d", self.server_index, info.version)
        return True


def open_decision_server(
    settings: ServerSettings,
    *,
    hmac_key: bytes,
    clock: Callable[[], float] | None = None,
    base: Callable[[], Engine] | None = None,
) -> tuple[FastAPI, EventStore]:
    """Open the log, load the newest published version (or the base engine as version 0 when
    none is published yet) and build a decision server's app. Close ``app.state.reader`` and the
    returned log after serving."""
    log = open_log(
        settings.db,
        hmac_key=hmac_key,
        synchronous=settings.synchronous,
        busy_timeout=settings.busy_timeout,
    )
    reader: EventStore | None = None
    try:
        # reads (profiles, decision lookups, versions) on a connection of their own: they never
        # wait for the writer, which the group commit holds in a helper thread
        reader = open_log(
            settings.db, hmac_key=hmac_key, read_only=True, busy_timeout=settings.busy_timeout
        )
        info = log.latest_version()
        data = None if info is None else log.version_state(info.version)
        if info is not None and data is not None:
            engine, version = _engine_of(data, info.version), info.version
        else:
            info = None
            engine = (base if base is not None else base_engine_factory(settings))()
            version = 0
        if clock is not None:
            engine.clock = clock
        service = DecisionService(
            engine, log, version=version, server_index=settings.server_index, reads=reader
        )
        rules = Rules.from_toml(Path(settings.rules)) if settings.rules is not None else None
        if rules is not None:
            service.use_rules(rules)  # counters in the shared log: caps hold across servers
        warm_up(engine)  # the first decision's one-time costs, before serving (service/warmup.py)
        worker = DecisionWorker(
            service, reader=reader, info=info, settings=settings, metrics=Metrics(), clock=clock
        )
        app = create_app(service.engine, log, settings, worker=worker)
        app.state.reader = reader
    except BaseException:
        if reader is not None:
            reader.close()
        log.close()
        raise
    logger.info(
        "decision server %d: model %s version %d", settings.server_index, engine.model_id, version
    )
    return app, log


def learner_metrics(learner: Learner) -> Metrics:
    """The learner's metrics (read from its stats at scrape time)."""
    m = Metrics()
    m._help.clear()  # the HTTP server's counters (decisions, events, commits) are not the learner's
    s = learner.stats
    for name, text, read in (
        ("bandit_learner_leader", "1 while this process holds the learner role.", lambda: s.leader),
        ("bandit_learner_position", "Journal seq the learner has consumed.", lambda: s.position),
        (
            "bandit_learner_lag_entries",
            "Journal entries between the log head and the learner's position (at its last step).",
            lambda: max(0, s.head - s.position) if s.leader else math.nan,
        ),
        (
            "bandit_learner_last_step_age_seconds",
            "Seconds since the learner's last completed step.",
            lambda: time.time() - s.last_step_at if s.last_step_at else math.nan,
        ),
        (
            "bandit_learner_pending_decisions",
            "Decisions waiting for their window to close.",
            lambda: len(learner.pending or ()),
        ),
        ("bandit_model_version", "Newest model version this learner published.", lambda: s.version),
        (
            "bandit_model_age_seconds",
            "Seconds since that version was published.",
            lambda: time.time() - s.version_created_at if s.version_created_at else math.nan,
        ),
        ("bandit_learner_versions_published", "Versions published.", lambda: s.published),
        (
            "bandit_learner_decisions_learned",
            "Decisions learned by this process.",
            lambda: s.learned,
        ),
        ("bandit_learner_takeovers", "Times this process took the role.", lambda: s.takeovers),
        ("bandit_learner_failures", "Failed steps (reloaded from the store).", lambda: s.failures),
    ):
        m.gauge(name, text, _as_float(read))
    return m


def _as_float(read: Callable[[], Any]) -> Callable[[], float]:
    return lambda: float(read())


def serve_learner_metrics(
    learner: Learner, host: str, port: int, *, token: bytes | None = None
) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` (Prometheus text) and ``GET /healthz`` of a learner from a daemon
    thread. With ``token``, ``/metrics`` needs ``Authorization: Bearer <token>``."""
    metrics = learner_metrics(learner)

    class Handler(BaseHTTPRequestHandler):
        server_version = f"bandit-learner/{__version__}"

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b'{"status":"ok"}', "application/json")
                return
            if self.path != "/metrics":
                self._send(404, b'{"error":"NotFound"}', "application/json")
                return
            if token is not None:
                sent = self.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode("utf-8"), b"Bearer " + token):
                    self._send(401, b'{"error":"Unauthorized"}', "application/json")
                    return
            body = metrics.render().encode("utf-8")
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")

        def _send(self, status: int, body: bytes, media: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # no access log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="learner-metrics", daemon=True).start()
    return server
