"""``bandit learn``: the learner role of the split deployment (issue 12).

Only typer is imported at module level (``bandit --help`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..holdout import HoldoutPlan

__all__ = ["learn", "register", "run_learner"]


def run_learner(
    *,
    db: str,
    model: str | None,
    demo_seed: int,
    demo_policy: str,
    synchronous: str,
    busy_timeout: float,
    grace: float,
    publish_interval: float,
    keep_versions: int,
    lease_ttl: float,
    metrics_host: str,
    metrics_port: int | None,
    blas_threads: int,
    holdout: HoldoutPlan | None = None,
    apprentice: str | None = None,
) -> None:
    """Run the learner until SIGTERM / SIGINT (the body of ``bandit learn``). ``holdout`` is
    set on the base engine (the published versions carry it to the decision servers), and so is
    ``apprentice`` (the rule served while the base engine's policy learns; the learner checks
    the switch rule and journals the switch, :mod:`bandit_engine.evaluation.apprentice`)."""
    import os
    import signal
    import threading

    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from ..engine import Engine
    from ..errors import ConfigError
    from ..evaluation.apprentice import status
    from ..policies.apprentice import ApprenticePolicy
    from ..rules import policy_from_spec
    from ..service.learner import Learner
    from ..store import open_log, redact
    from ..store.lease import open_lease

    if blas_threads < 1:
        raise ConfigError.for_field("blas_threads", blas_threads, "must be >= 1")
    threadpool_limits(limits=blas_threads, user_api="blas")
    sync = synchronous.upper()
    if sync not in ("OFF", "NORMAL", "FULL"):
        raise ConfigError.for_field("synchronous", synchronous, "must be OFF, NORMAL or FULL")
    if keep_versions < 1:
        raise ConfigError.for_field("keep_versions", keep_versions, "must be >= 1")
    if not 0 < lease_ttl <= 60:
        raise ConfigError.for_field("lease_ttl", lease_ttl, "must be in (0, 60] seconds")

    def base() -> Engine:
        if model is not None:
            engine = Engine.load(model)
        else:
            from ..demo import demo_engine

            engine = demo_engine(seed=demo_seed, policy=demo_policy)
        if apprentice is not None and not isinstance(engine.policy, ApprenticePolicy):
            # as the decision servers' base engine (server/app.py): the same lineage
            engine.policy = ApprenticePolicy(
                rule=policy_from_spec(apprentice, "apprentice"), learner=engine.policy
            )
            engine.policy.bind_feature_names(engine.catalog.feature_names)
        if holdout is not None and (
            engine.holdout is None or engine.holdout.to_dict() != holdout.to_dict()
        ):
            engine.set_holdout(holdout)  # after the apprentice wrap, as the servers do
        return engine

    base().model_id  # noqa: B018  (a bad --model fails now, not at the first take-over)
    # the learner never sees a user id (it reads pseudonyms), so it needs no HMAC key
    log = open_log(db, hmac_key=None, synchronous=sync, busy_timeout=busy_timeout)  # type: ignore[arg-type]
    lease = open_lease(log, ttl=lease_ttl)
    learner = Learner(
        base,
        log,
        lease,
        grace=grace,
        publish_interval=publish_interval,
        keep_versions=keep_versions,
        apprentice_check=status,  # acts only while an apprentice policy serves its rule
    )
    stop = threading.Event()

    def on_signal(sig: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    http = None
    try:
        if metrics_port is not None:
            from ..server.roles import serve_learner_metrics

            raw = os.environ.get("BANDIT_READ_TOKEN", "") or os.environ.get("BANDIT_API_TOKEN", "")
            token = raw.strip().encode("utf-8") or None
            http = serve_learner_metrics(learner, metrics_host, metrics_port, token=token)
        typer.echo(
            f"learner {lease.holder} on {redact(db)} (grace {grace} s, publishing every "
            f"{publish_interval} s)",
            err=True,
        )
        learner.run(stop)
    finally:
        if http is not None:
            http.shutdown()
        lease.close()
        log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def learn(
    db: str = typer.Option(..., "--db", help="Event log: a SQLite file or a postgresql:// URL."),
    model: str | None = typer.Option(
        None, "--model", help="Base engine file (used until a version is published)."
    ),
    demo_seed: int = typer.Option(0, "--demo-seed", help="Seed of the demo engine (no --model)."),
    demo_policy: str = typer.Option(
        "pair_ts", "--demo-policy", help="Policy of the demo engine (no --model)."
    ),
    synchronous: str = typer.Option("NORMAL", "--synchronous", help="OFF, NORMAL or FULL."),
    busy_timeout: float = typer.Option(
        30.0, "--busy-timeout", help="Seconds a write waits for another writer's lock."
    ),
    grace: float = typer.Option(
        2.0, "--grace", help="Seconds past a window's end before its decision is closed."
    ),
    publish_interval: float = typer.Option(
        2.0, "--publish-interval", help="Seconds between published model versions."
    ),
    keep_versions: int = typer.Option(5, "--keep-versions", help="Versions kept in the store."),
    lease_ttl: float = typer.Option(
        6.0, "--lease-ttl", help="SQLite: seconds a silent learner keeps the role."
    ),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Metrics interface."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve GET /metrics and /healthz on this port."
    ),
    blas_threads: int = typer.Option(1, "--blas-threads", help="BLAS threads."),
    log_level: str = typer.Option("info", "--log-level", help="Log level."),
    holdout: Annotated[
        list[str] | None,
        typer.Option("--holdout", help="As serve-policy's --holdout: SHARE or NAME=SHARE."),
    ] = None,
    holdout_policy: Annotated[
        list[str] | None,
        typer.Option("--holdout-policy", help="As serve-policy's --holdout-policy."),
    ] = None,
    holdout_salt: str = typer.Option("holdout-v1", "--holdout-salt", help="Bucketing salt."),
    apprentice: str | None = typer.Option(
        None,
        "--apprentice",
        help="As serve-policy's --apprentice: serve this rule (NAME[:key=value,...]) until the "
        "learner's switch rule holds; give the decision servers the same.",
    ),
) -> None:
    """The learner role: tail the event log, learn each decision exactly once, publish model
    versions. Any number may run; one holds the role, the others take over when it dies."""
    from .exits import run

    def body() -> None:
        import logging

        from .holdout_options import holdout_plan

        plan = holdout_plan(holdout, holdout_policy, holdout_salt)
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        run_learner(
            db=db,
            model=model,
            demo_seed=demo_seed,
            demo_policy=demo_policy,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            grace=grace,
            publish_interval=publish_interval,
            keep_versions=keep_versions,
            lease_ttl=lease_ttl,
            metrics_host=metrics_host,
            metrics_port=metrics_port,
            blas_threads=blas_threads,
            holdout=plan,
            apprentice=apprentice,
        )

    run(body)


def register(app: typer.Typer) -> None:
    """Add ``learn`` to the ``bandit`` app."""
    app.command("learn")(learn)
