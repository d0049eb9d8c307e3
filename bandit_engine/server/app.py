"""The FastAPI application: a thin HTTP adapter over the engine and the event log.

Endpoints (JSON; all but ``/healthz`` need ``Authorization: Bearer <token>``):

* ``POST /v1/decisions`` -> the chosen bundle, its propensity and the policy version;
* ``POST /v1/events`` -> 202 with the event's status (accepted / duplicate / late);
* ``GET /v1/decisions/{decision_id}`` -> the logged decision, its events and reward status
  (``?explain=1``: why its bundle, while the decision is pending);
* ``GET /healthz`` (liveness), ``GET /readyz`` (readiness: writes work); ``GET /metrics``
  (Prometheus text format);
* ``POST /v1/admin/{deals,courses,bundles}`` and ``.../retire``: catalog changes (journaled);
* ``POST /v1/admin/profiles`` (upsert) and ``POST /v1/admin/users/forget``;
* ``GET /dashboard`` (page; data from ``GET /dashboard/data``, read role) and
  ``GET /dashboard/public`` (differentially private figures, no token):
  :mod:`bandit_engine.server.dashboard`.

User ids travel in request bodies only, never in paths, so access logs cannot carry them. Every write is
committed to the event log before the response is sent (see :mod:`bandit_engine.server.worker`).
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from .._version import __version__
from ..engine import Engine
from ..evaluation.apprentice import check_switch, status
from ..holdout import HoldoutPlan
from ..policies.apprentice import ApprenticePolicy
from ..records import LearnedReward
from ..rules import Rules, policy_from_spec
from ..service import Checkpointer, LoggedEngine
from ..service.checkpoints import RestoreReport
from ..service.profile_store import announce_profiles
from ..service.warmup import warm_up
from ..store import EventStore, open_log
from .dashboard import install_dashboard
from .errors import (
    install_error_handlers,
)
from .guard import OPEN_PAGES, OPEN_PATHS, FastRoute, GuardMiddleware
from .metrics import Metrics
from .models import (
    AdminResult,
    BundlesAdd,
    CoursesAdd,
    DealsAdd,
    DecisionRecord,
    DecisionRequest,
    DecisionResponse,
    EventRequest,
    EventResponse,
    ForgetRequest,
    ForgetResponse,
    Health,
    ProfileUpsert,
    Retire,
    jsonable,
)
from .settings import ServerSettings
from .worker import EngineWorker

__all__ = ["base_engine_factory", "create_app", "open_server"]

logger = logging.getLogger("bandit_engine.server")
_JSON = "application/json"


def _json(content: Any, status: int = 200) -> Response:
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(body.encode("utf-8"), status_code=status, media_type=_JSON)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
        for path, ops in schema.get("paths", {}).items():
            if path in OPEN_PATHS or path in OPEN_PAGES:
                continue
            for op in ops.values():
                op["security"] = [{"bearerAuth": []}]
                op.setdefault("responses", {}).setdefault(
                    "401", {"description": "Missing or invalid bearer token"}
                )
        app.openapi_schema = schema
        return schema

    return build


def _no_otel() -> dict[str, Any]:
    """Turn off FastAPI's native OpenTelemetry hooks where they exist: they look providers up on
    every request, and this server exports its own Prometheus metrics."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def base_engine_factory(settings: ServerSettings) -> Callable[[], Engine]:
    """Builds the base engine of ``settings``: the ``--model`` file or the demo engine, with the
    settings' holdout groups."""

    def build() -> Engine:
        if settings.model is not None:
            engine = Engine.load(settings.model)
        else:
            from ..demo import demo_engine  # its model_id depends on the seed only: restarts resume
            from ..simulation.policy_spec import parse_policy_spec

            spec = parse_policy_spec(settings.demo_policy)  # NAME[:key=value,...]
            engine = demo_engine(seed=settings.demo_seed, policy=spec.name, **spec.kwargs)
        if settings.apprentice is not None and not isinstance(engine.policy, ApprenticePolicy):
            engine.policy = ApprenticePolicy(
                rule=policy_from_spec(settings.apprentice, "apprentice"), learner=engine.policy
            )
            # the rule may name a bundle column (fixed_rule:column=deal.discount)
            engine.policy.bind_feature_names(engine.catalog.feature_names)
        _use_holdout(engine, settings.holdout)
        return engine

    return build


def _use_holdout(engine: Engine, plan: HoldoutPlan | None) -> bool:
    """Give the engine the configured holdout plan unless it holds that plan already (a
    checkpoint keeps each group's learned policy); returns whether it changed."""
    held = None if engine.holdout is None else engine.holdout.to_dict()
    if held == (None if plan is None else plan.to_dict()):
        return False
    if held is not None:
        logger.warning("holdout plan changed: each group's policy starts afresh")
    engine.set_holdout(plan)
    return True


def _restore(
    build: Callable[[], Engine],
    log: EventStore,
    checkpointer: Checkpointer,
    settings: ServerSettings,
    **options: Any,
) -> tuple[LoggedEngine, RestoreReport]:
    """:meth:`LoggedEngine.restore`, then the configured holdout plan on what it restored."""
    service, report = LoggedEngine.restore(build, log, checkpointer, **options)
    if _use_holdout(service.engine, settings.holdout):
        service.record_experiment()
    return service, report


def open_server(
    settings: ServerSettings,
    *,
    hmac_key: bytes,
    clock: Callable[[], float] | None = None,
    base: Callable[[], Engine] | None = None,
) -> tuple[FastAPI, EventStore]:
    """Open the event log, restore the engine (checkpoint + journal roll-forward) and build the app.

    ``clock`` overrides the engine clock (tests, simulations); ``base`` overrides how the base engine
    is built (default: :func:`base_engine_factory`).
    """
    log = open_log(
        settings.db,
        hmac_key=hmac_key,
        synchronous=settings.synchronous,
        busy_timeout=settings.busy_timeout,
    )
    try:
        build = base if base is not None else base_engine_factory(settings)
        checkpointer = Checkpointer(settings.checkpoints, keep=settings.checkpoint_keep)
        checkpointer.check_writable("checkpoint_dir")
        service, report = _restore(
            build,
            log,
            checkpointer,
            settings,
            clock=clock,
            profiles_in_log=True,
            accept_rollback=settings.accept_rollback,
        )
        if report.redone_decisions or report.redone_events or report.redone_admin:
            # what was rolled forward is saved at once: a crash loop does not make every
            # following start roll the same (and a growing) journal forward again
            service.checkpoint()
        logger.info(
            "engine %s restored: checkpoint=%s seq=%d rolled forward %d decisions, %d events, "
            "%d admin ops",
            service.engine.model_id,
            report.checkpoint,
            report.checkpoint_seq,
            report.redone_decisions,
            report.redone_events,
            report.redone_admin,
        )
        announce_profiles(log, service.engine.features, logger)
        # the first decision's imports and compiled kernels (260-380 ms measured) are paid now,
        # before the app serves and before its lifespan freezes the collector (service/warmup.py)
        warm_up(service.engine)
        app = create_app(service.engine, log, settings, base=build)
    except BaseException:
        log.close()
        raise
    return app, log


def _single_process_worker(
    engine: Engine, log: EventStore, settings: ServerSettings, base: Callable[[], Engine] | None
) -> EngineWorker:
    """The worker of ``--role all``: one engine that decides and learns, with checkpoints."""
    metrics = Metrics()
    checkpointer = Checkpointer(settings.checkpoints, keep=settings.checkpoint_keep)
    build = base if base is not None else base_engine_factory(settings)
    clock = engine.clock

    def learned(rec: LearnedReward) -> None:
        metrics.inc("bandit_rewards_learned_total", status=rec.status)

    options: dict[str, Any] = {"profiles_in_log": True, "on_learned": learned}

    rules = Rules.from_toml(Path(settings.rules)) if settings.rules is not None else None

    def configured(service: LoggedEngine) -> LoggedEngine:
        """The settings' business rules (over what a checkpoint holds) and apprentice check."""
        if rules is not None:
            service.use_rules(rules)
        service.apprentice_check = check_switch  # acts only while a rule is served
        return service

    def rebuild() -> LoggedEngine:
        return configured(_restore(build, log, checkpointer, settings, clock=clock, **options)[0])

    return EngineWorker(
        configured(LoggedEngine(engine, log, checkpoints=checkpointer, **options)),
        rebuild=rebuild,
        metrics=metrics,
        max_batch=settings.max_batch,
        max_delay=settings.commit_delay,
        advance_interval=settings.advance_interval,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_seconds=settings.checkpoint_seconds,
        fork_checkpoints=settings.fork_checkpoints,
    )


def create_app(
    engine: Engine,
    log: EventStore,
    settings: ServerSettings,
    *,
    base: Callable[[], Engine] | None = None,
    worker: EngineWorker | None = None,
) -> FastAPI:
    """The HTTP application over a ready ``engine`` and its event ``log``.

    ``base`` builds the base engine when the worker must rebuild after a failure (default:
    :func:`base_engine_factory`). The worker thread starts with the app's lifespan and stops (after a
    final checkpoint) when the app shuts down. ``worker`` replaces the single-process worker (a
    decision server of the split roles brings its own: :mod:`bandit_engine.server.roles`).
    """
    if worker is None:
        worker = _single_process_worker(engine, log, settings, base)
    metrics = worker.metrics
    metrics.gauge(
        "bandit_pending_decisions",
        "Decisions waiting for their attribution window to close.",
        lambda: float(len(worker.engine.attribution)),
    )
    metrics.gauge(
        "bandit_policy_updates",
        "Updates the policy has learned.",
        lambda: float(worker.engine.n_learned),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything alive now (modules, the engine, the catalog) lives as long as the server:
        # moving it out of the collector's view keeps full collections, which pause serving,
        # proportional to what requests allocate instead of to the whole process (open_server
        # warmed the engine up first, so the first decision's imports are frozen too).
        gc.collect()
        gc.freeze()
        worker.start()
        dashboard.start_refresh()  # the first build starts with the server, not a page view
        try:
            yield
        finally:
            await worker.stop(checkpoint=True)
            await dashboard.aclose()

    app = FastAPI(
        **_no_otel(),
        title="bandit-engine policy server",
        version=__version__,
        description=(
            "Contextual-bandit decisions over bundles (deal, course) with a durable event log. "
            "Every endpoint except /healthz and /readyz needs `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.metrics = metrics
    app.state.log = log
    app.state.settings = settings
    install_error_handlers(app)
    dashboard = install_dashboard(app, settings, worker)
    fast: dict[str, FastRoute] = {}  # filled below, read when the middleware stack is built
    app.add_middleware(
        GuardMiddleware,
        tokens=settings.tokens,
        max_body=settings.max_body_bytes,
        metrics=metrics,
        fast=fast,
    )
    app.openapi = _openapi(app)  # type: ignore[method-assign]

    errors_4xx: dict[int | str, dict[str, Any]] = {
        400: {"description": "Malformed JSON"},
        413: {"description": "Body over the size limit"},
        422: {"description": "Invalid field (the body names it)"},
    }

    # -- jobs (run on the worker thread, inside the batch transaction) -----------------------
    def decide_job(body: DecisionRequest, service: LoggedEngine) -> dict[str, Any]:
        d = service.decide(
            body.user_id, body.profile, candidates=body.candidates, decision_id=body.decision_id
        )
        worker.note_decisions()
        metrics.inc("bandit_decisions_total")
        out = {
            "decision_id": d.decision_id,
            "bundle_id": d.bundle_id,
            "deal_id": d.deal_id,
            "course_id": d.course_id,
            "propensity": d.propensity,
            "policy_version": d.policy_version,
            "timestamp": d.timestamp,
            **({} if d.group is None else {"group": d.group}),
        }
        if d.mode is not None:
            out["mode"] = d.mode
        return out

    def event_job(body: EventRequest, service: LoggedEngine) -> dict[str, Any]:
        status = service.report(
            body.decision_id, body.type, value=body.value, event_id=body.event_id
        )
        metrics.inc("bandit_events_total", status=status)
        if status == "late":
            metrics.inc("bandit_late_events_total")
        return {"decision_id": body.decision_id, "event_id": body.event_id, "status": status}

    def admin_job(op: str, payload: dict[str, Any], service: LoggedEngine) -> Any:
        done = service.apply(op, payload)
        return {"op": done.op, "seq": done.seq, "added_bundles": done.added_bundles}

    async def handle_decision(body: DecisionRequest) -> dict[str, Any]:
        result: dict[str, Any] = await worker.run(partial(decide_job, body))
        return result

    async def handle_event(body: EventRequest) -> dict[str, Any]:
        result: dict[str, Any] = await worker.run(partial(event_job, body))
        return result

    if settings.fast_path:
        fast["/v1/decisions"] = (DecisionRequest, handle_decision, 200)
        fast["/v1/events"] = (EventRequest, handle_event, 202)

    # -- routes ------------------------------------------------------------------------------
    @app.post(
        "/v1/decisions",
        response_model=DecisionResponse,
        responses={**errors_4xx, 409: {}},
        tags=["decisions"],
    )
    async def post_decision(body: DecisionRequest) -> Response:
        """Choose a bundle for a user; the decision is logged before the answer."""
        return _json(await handle_decision(body))

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=EventResponse,
        responses={**errors_4xx, 404: {"description": "Unknown decision id"}},
        tags=["decisions"],
    )
    async def post_event(body: EventRequest) -> Response:
        """Report a click or an order; logged before the answer (202)."""
        return _json(await handle_event(body), status=202)

    @app.get(
        "/v1/decisions/{decision_id}",
        response_model=DecisionRecord,
        responses={404: {"description": "Unknown decision id"}},
        tags=["decisions"],
    )
    async def get_decision(decision_id: str, explain: bool = False, top_k: int = 5) -> Response:
        """A logged decision, its events and its reward status; with ``?explain=1`` also why its
        bundle was chosen (:meth:`Engine.explain <bandit_engine.Engine.explain>`: while the
        decision is pending; 404 once its inputs are gone, 422 for a policy that cannot explain)."""
        record = await worker.run(lambda service: service.log.decision(decision_id))
        if explain:
            why = await worker.run(lambda service: service.engine.explain(decision_id, top_k=top_k))
            record["explanation"] = why.to_dict()
        return _json(jsonable(record))

    @app.get("/v1/experiment", tags=["decisions"])
    async def get_experiment() -> Response:
        """The holdout plan, users and decisions per group, and the sample-ratio check
        (chi-square of users per group against the configured shares; ``mismatch`` when
        p < 0.001). One SQL pass over the log's decisions."""
        from ..reporting import sample_ratio

        record = await worker.run(lambda service: sample_ratio(service.log))
        return _json(jsonable(record))

    @app.api_route("/healthz", methods=["GET", "HEAD"], response_model=Health, tags=["operations"])
    async def healthz() -> Response:
        """Liveness without authentication: 200 while the engine worker serves."""
        if worker.healthy:
            return _json({"status": "ok"})
        return _json({"status": "unavailable"}, status=503)

    @app.api_route("/readyz", methods=["GET", "HEAD"], response_model=Health, tags=["operations"])
    async def readyz() -> Response:
        """Readiness without authentication: 200 while decisions and events can be written; 503
        from a failed write (the event log locked by another process past its busy timeout, a full
        or failing disk) until a write succeeds again."""
        if worker.ready:
            return _json({"status": "ok"})
        return _json({"status": "unavailable"}, status=503)

    @app.get(
        "/metrics",
        tags=["operations"],
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def get_metrics() -> Response:
        """Counters and latency histograms in the Prometheus text format."""
        return Response(
            metrics.render().encode("utf-8"), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def admin_route(path: str, op: str, model: type[Any], summary: str) -> None:
        async def endpoint(body: Any) -> Response:
            payload = body.model_dump(mode="json", exclude_none=op == "add_bundles")
            if payload.get("pair_with", False) is None:
                del payload["pair_with"]  # the journal keeps what was asked, nothing more
            return _json(await worker.run(partial(admin_job, op, payload)))

        endpoint.__annotations__["body"] = model
        app.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=AdminResult,
            summary=summary,
            responses={**errors_4xx, 404: {"description": "Unknown id"}},
            tags=["admin"],
            name=op,
        )

    admin_route("/v1/admin/deals", "add_deals", DealsAdd, "Add (or update) deals")
    admin_route("/v1/admin/deals/retire", "retire_deals", Retire, "Retire deals")
    admin_route("/v1/admin/courses", "add_courses", CoursesAdd, "Add (or update) courses")
    admin_route("/v1/admin/courses/retire", "retire_courses", Retire, "Retire courses")
    admin_route("/v1/admin/bundles", "add_bundles", BundlesAdd, "Add bundles")
    admin_route("/v1/admin/bundles/retire", "retire_bundles", Retire, "Retire bundles")

    @app.post(
        "/v1/admin/profiles",
        responses=errors_4xx,
        tags=["admin"],
    )
    async def upsert_profile(body: ProfileUpsert) -> Response:
        """Store or update a user's profile (kept under the user's pseudonym)."""

        def job(service: LoggedEngine) -> dict[str, Any]:
            out = {}
            for platform, fields in body.profile.items():
                out[platform] = service.upsert_profile(
                    body.user_id, platform, fields, replace=body.replace
                )
            return {"profile": out}

        return _json(await worker.run(job))

    @app.get("/v1/admin/apprentice", tags=["admin"], responses=errors_4xx)
    async def apprentice_status() -> Response:
        """Apprentice mode: agreement, the rule's value, the learner's off-policy estimate and
        whether the switch rule holds (422 when the server is not in apprentice mode)."""
        return _json(await worker.run(lambda service: status(service.engine).to_dict()))

    @app.post("/v1/admin/apprentice/switch", tags=["admin"], responses=errors_4xx)
    async def apprentice_switch() -> Response:
        """Serve the learner from now on (journaled; a no-op when already switched)."""
        done = await worker.run(lambda service: service.apprentice_switch("told"))
        return _json({"op": done.op, "seq": done.seq})

    @app.post(
        "/v1/admin/users/forget",
        response_model=ForgetResponse,
        responses=errors_4xx,
        tags=["admin"],
    )
    async def forget_user(body: ForgetRequest) -> Response:
        """Delete the user's profile and every logged row under their pseudonym."""
        deleted = await worker.run(lambda service: service.forget_user(body.user_id))
        # then no file keeps a copy: the WAL truncated, checkpoints rewritten without the user
        if not await worker.between_batches(lambda service: service.scrub()):
            logger.warning("forget: a reader kept the WAL from being truncated; it will be later")
        return _json({"deleted": deleted})

    return app
