"""``bandit serve-policy``, ``bandit purge`` and ``bandit forget-user``.

Only typer is imported at module level; the server stack (FastAPI, uvicorn, numpy, pandas) is imported
inside the command bodies so that ``bandit --help`` stays fast.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

__all__ = ["register"]

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_policy(
    model: str | None = typer.Option(
        None, "--model", help="Saved engine file; without it the embedded demo engine is served."
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        help="Event log: a SQLite file (created if missing) or a postgresql:// URL (created in an "
        "empty schema; needs --checkpoint-dir). Default: events.sqlite.",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (loopback by default)."
    ),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    synchronous: str = typer.Option(
        "NORMAL",
        "--synchronous",
        help="Durability: OFF, NORMAL or FULL (SQLite's synchronous; PostgreSQL's "
        "synchronous_commit off / server default / on; see docs).",
    ),
    checkpoint_dir: str | None = typer.Option(
        None,
        "--checkpoint-dir",
        help="Checkpoint folder (default <db>.checkpoints; required with a PostgreSQL URL).",
    ),
    checkpoint_every: int = typer.Option(
        10_000, "--checkpoint-every", help="Checkpoint after this many decisions."
    ),
    checkpoint_seconds: float = typer.Option(
        300.0, "--checkpoint-seconds", help="...or after this many seconds with changes."
    ),
    max_body_bytes: int = typer.Option(65_536, "--max-body-bytes", help="Larger bodies get 413."),
    max_header_bytes: int = typer.Option(
        16_384, "--max-header-bytes", help="Request line + headers above this get 431 (or 414)."
    ),
    header_timeout: float = typer.Option(
        10.0, "--header-timeout", help="Seconds a client has to send a request's headers."
    ),
    body_timeout: float = typer.Option(
        30.0, "--body-timeout", help="Seconds a client has to send a request's body."
    ),
    max_connections: int = typer.Option(
        512, "--max-connections", help="Open connections above this are answered 503 and closed."
    ),
    max_batch: int = typer.Option(256, "--max-batch", help="Most requests per commit."),
    token_file: str | None = typer.Option(
        None, "--token-file", help="File holding the API token (else $BANDIT_API_TOKEN)."
    ),
    hmac_key_file: str | None = typer.Option(
        None, "--hmac-key-file", help="File holding the user-id HMAC key (else $BANDIT_HMAC_KEY)."
    ),
    demo_seed: int = typer.Option(0, "--demo-seed", help="Seed of the demo engine."),
    rules: str | None = typer.Option(
        None,
        "--rules",
        help="TOML file of business rules (eligibility, caps, budgets, exclusions, fallback); "
        "caps and budgets are counted in the event log, shared by every server process.",
    ),
    apprentice: str | None = typer.Option(
        None,
        "--apprentice",
        help="Apprentice mode: serve this rule (a policy spec, e.g. 'fixed_rule:column=3,"
        "epsilon=0.1') while the model's policy learns from its traffic; switches when agreement "
        "and the off-policy estimate pass (or POST /v1/admin/apprentice/switch).",
    ),
    demo_policy: str = typer.Option(
        "pair_ts",
        "--demo-policy",
        help="Policy of the demo engine (no --model): NAME[:key=value,...], e.g. "
        "fixed_rule:column=deal.discount.",
    ),
    dev: bool = typer.Option(
        False,
        "--dev",
        help="Throw-away setup for trying things: ephemeral HMAC key, random API token written to "
        "<db>.token (mode 0600), and a temporary database unless --db is given.",
    ),
    blas_threads: int = typer.Option(
        1,
        "--blas-threads",
        help="BLAS threads for the policy's linear algebra. One request at a time is served, and "
        "multi-threaded BLAS on small matrices mostly contends (measured 5x slower decisions).",
    ),
    accept_rollback: bool = typer.Option(
        False,
        "--accept-rollback",
        help="Start even if a purged journal cannot bring the newest usable checkpoint up to the "
        "logged state (what was learned since that checkpoint is lost).",
    ),
    holdout: Annotated[
        list[str] | None,
        typer.Option(
            "--holdout",
            help="Keep a share of users on a control policy: SHARE or NAME=SHARE, SHARE in "
            "(0, 0.5]; repeat for several groups (sticky by keyed hash of the user's pseudonym).",
        ),
    ] = None,
    holdout_policy: Annotated[
        list[str] | None,
        typer.Option(
            "--holdout-policy",
            help="The control of each --holdout, in order: NAME[:key=value,...] of any "
            "registered policy or rule (default uniform), e.g. popularity or "
            "fixed_rule:column=deal.discount.",
        ),
    ] = None,
    holdout_salt: str = typer.Option(
        "holdout-v1", "--holdout-salt", help="Salt of the bucketing (a new salt reshuffles users)."
    ),
    # issue 13 / 15: the dashboard and its public, differentially private view
    dashboard_refresh: float = typer.Option(
        10.0,
        "--dashboard-refresh",
        help="Seconds after which a /dashboard view refreshes its report in the background.",
    ),
    public_dp_epsilon: float | None = typer.Option(
        None,
        "--public-dp-epsilon",
        help="Epsilon of each release of /dashboard/public (off unless set with --dp-budget).",
    ),
    dp_budget: float | None = typer.Option(
        None, "--dp-budget", help="Total epsilon of the log's privacy ledger."
    ),
    dp_cap: int = typer.Option(
        20, "--dp-cap", help="Decisions per user counted in a public release (sensitivity)."
    ),
    public_dp_refresh: float = typer.Option(
        86_400.0,
        "--public-dp-refresh",
        help="Seconds a public release is shown before a new one spends budget again.",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log each request."
    ),
    # issue 12: the split roles (decision servers, one learner); see server/roles.py
    role: str = typer.Option(
        "all",
        "--role",
        help="all: one process decides and learns (default); decide: decision server(s) that "
        "load the learner's model versions; learner: the learner only (as `bandit learn`).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        help="Decision server processes sharing --port (SO_REUSEPORT); with --role all and N > 1, "
        "N decision servers plus a learner and a standby learner under a supervisor.",
    ),
    refresh_interval: float = typer.Option(
        2.0, "--refresh-interval", help="Seconds between a decision server's version checks."
    ),
    busy_timeout: float = typer.Option(
        30.0, "--busy-timeout", help="Seconds a write waits for another process's lock (then 503)."
    ),
    learner_metrics_port: int | None = typer.Option(
        None,
        "--learner-metrics-port",
        help="With --workers: the learner's /metrics port (the standby learner's is the next one).",
    ),
    server_index: int = typer.Option(0, "--server-index", hidden=True),
) -> None:
    """Serve decisions over HTTP with a durable event log (SQLite or PostgreSQL) and online
    learning."""
    from .exits import run

    def body() -> None:
        import logging
        import secrets
        import tempfile

        import uvicorn

        from ..errors import ConfigError
        from ..server import ServerSettings, load_api_token, open_server
        from ..server.auth import ROLE_ENV, Secret, generate_token_file, load_role_tokens
        from ..server.protocol import guarded_protocol
        from ..store import is_url, load_hmac_key, redact

        if blas_threads < 1:
            raise ConfigError.for_field("blas_threads", blas_threads, "must be >= 1")
        if role not in ("all", "decide", "learner"):
            raise ConfigError.for_field("role", role, "must be all, decide or learner")
        if workers < 1:
            raise ConfigError.for_field("workers", workers, "must be >= 1")
        if role == "learner" or workers > 1:
            if dev:
                raise ConfigError.for_field(
                    "dev", True, f"cannot be combined with --role {role} --workers {workers}"
                )
            if db is None:
                raise ConfigError.for_field("db", None, "must be given with the split roles")
            _split_roles(
                db=db,
                role=role,
                workers=workers,
                model=model,
                demo_seed=demo_seed,
                demo_policy=demo_policy,
                synchronous=synchronous,
                busy_timeout=busy_timeout,
                learner_metrics_port=learner_metrics_port,
                blas_threads=blas_threads,
                apprentice=apprentice,
            )
            return
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        threadpool_limits(limits=blas_threads, user_api="blas")
        sync = synchronous.upper()
        if sync not in ("OFF", "NORMAL", "FULL"):
            raise ConfigError.for_field("synchronous", synchronous, "must be OFF, NORMAL or FULL")
        path = (
            db
            if db is not None
            else (
                str(Path(tempfile.mkdtemp(prefix="bandit-dev-")) / "events.sqlite")
                if dev
                else "events.sqlite"
            )
        )
        roles = {r: env for r, env in ROLE_ENV.items() if os.environ.get(env, "").strip()}
        if dev and token_file is None:
            # beside a SQLite file; a URL names no folder, so a private temporary one
            token_path = (
                Path(tempfile.mkdtemp(prefix="bandit-dev-")) / "api.token"
                if is_url(path)
                else Path(f"{path}.token")
            )
            token = generate_token_file(token_path)
            typer.echo(f"dev mode: API token written to {token_path} (mode 0600)", err=True)
        elif (
            len(roles) == len(ROLE_ENV)
            and token_file is None
            and not os.environ.get("BANDIT_API_TOKEN", "").strip()
        ):
            # every role has its own token: the fallback is never used, so nobody may know it
            token = Secret(secrets.token_urlsafe(32).encode("ascii"))
        else:
            token = load_api_token(file=token_file)
        role_tokens = load_role_tokens(token)
        if role_tokens["admin"] == role_tokens["decide"]:
            typer.secho(
                "warning: one token serves every role, so every caller that can ask for a "
                "decision can also read profiles, forget users and change the catalog; set "
                "BANDIT_ADMIN_TOKEN (and BANDIT_READ_TOKEN) to separate them",
                err=True,
                fg=typer.colors.YELLOW,
            )
        key = load_hmac_key(file=hmac_key_file, ephemeral=dev)
        from ..store.crypto import ENV_KEY, cipher_from_env

        if cipher_from_env() is None and not dev:  # a malformed key fails here, before serving
            typer.secho(
                f"warning: {ENV_KEY} is not set, so profile values and context vectors are "
                "stored unencrypted in the event log; set it to 64 random hex characters to "
                "encrypt them at rest (README: encryption at rest)",
                err=True,
                fg=typer.colors.YELLOW,
            )
        if not _is_loopback(host):
            typer.secho(
                f"warning: binding {host}, which is not a loopback address: the API is reachable "
                "from other machines (it still requires the token; put TLS in front of it)",
                err=True,
                fg=typer.colors.YELLOW,
            )
        from .holdout_options import holdout_plan

        plan = holdout_plan(holdout, holdout_policy, holdout_salt)
        settings = ServerSettings(
            db=path,
            api_token=token,
            role_tokens=role_tokens,
            model=model,
            demo_seed=demo_seed,
            demo_policy=demo_policy,
            host=host,
            port=port,
            synchronous=sync,  # type: ignore[arg-type]
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            accept_rollback=accept_rollback,
            role=role,
            refresh_interval=refresh_interval,
            server_index=server_index,
            busy_timeout=busy_timeout,
            rules=rules,
            apprentice=apprentice,
            holdout=plan,
            dashboard_refresh=dashboard_refresh,
            public_dp_epsilon=public_dp_epsilon,
            dp_budget=dp_budget,
            dp_cap=dp_cap,
            public_dp_refresh=public_dp_refresh,
        )
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        if role == "decide":
            from ..server.roles import open_decision_server

            app, log = open_decision_server(settings, hmac_key=key)
        else:
            app, log = open_server(settings, hmac_key=key)
        engine = app.state.worker.engine
        typer.echo(
            f"serving model {engine.model_id} ({engine.policy.name}) on http://{host}:{port} "
            f"(db {redact(path)}, synchronous={sync}, docs at /docs)",
            err=True,
        )
        from ..evaluation.support import greedy_policy_warning

        greedy = greedy_policy_warning(engine.policy.name, engine.policy.get_params())
        if greedy is not None:
            typer.secho(f"warning: {greedy}", err=True, fg=typer.colors.YELLOW)
        loop = "uvloop" if _has("uvloop") else "asyncio"
        for name, value in (
            ("max_header_bytes", max_header_bytes),
            ("header_timeout", header_timeout),
            ("body_timeout", body_timeout),
            ("max_connections", max_connections),
        ):
            if not value > 0:
                raise ConfigError.for_field(name, value, "must be > 0")
        # limits a request meets before routing and authentication (server/protocol.py)
        http = guarded_protocol(
            max_header_bytes=max_header_bytes,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
        )
        # uvicorn turns SIGTERM / SIGINT into a graceful shutdown (stop accepting, finish the
        # requests in flight, run the lifespan's final commit and checkpoint), then raises the
        # signal again for the handler that was there before it. That handler is ours and does
        # nothing, so the log below is closed (WAL copied into the main file) and we exit 0.
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
        options: dict[str, Any] = {
            "loop": loop,
            "http": http,
            "log_level": log_level.lower(),
            "access_log": access_log,
            "timeout_graceful_shutdown": 30,
            "lifespan": "on",
        }
        try:
            if role == "decide":
                # decision servers share the port: each binds it with SO_REUSEPORT
                from ..server.supervisor import reuse_port_socket

                sock = reuse_port_socket(host, port)
                uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(
                    sockets=[sock]
                )
            else:
                uvicorn.run(app, host=host, port=port, **options)
        finally:
            reader = getattr(app.state, "reader", None)
            if reader is not None:
                reader.close()
            log.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    run(body)


def _split_roles(
    *,
    db: str,
    role: str,
    workers: int,
    model: str | None,
    demo_seed: int,
    demo_policy: str,
    synchronous: str,
    busy_timeout: float,
    learner_metrics_port: int | None,
    blas_threads: int,
    apprentice: str | None = None,
) -> None:
    """``--role learner`` in this process, or ``--workers N``: N decision servers (each this
    command with ``--role decide --workers 1``) plus, for ``--role all``, one learner, under
    :func:`~bandit_engine.server.supervisor.supervise`."""
    from ..server.supervisor import Child, child_command, supervise
    from .learn import run_learner

    learner_args = {
        "db": db,
        "model": model,
        "demo_seed": demo_seed,
        "demo_policy": demo_policy,
        "synchronous": synchronous,
        "busy_timeout": busy_timeout,
        "grace": 2.0,
        "publish_interval": 2.0,
        "keep_versions": 5,
        "lease_ttl": 6.0,
        "metrics_host": "127.0.0.1",
        "metrics_port": learner_metrics_port,
        "blas_threads": blas_threads,
        "apprentice": apprentice,
    }
    if role == "learner":
        if workers != 1:
            from ..errors import ConfigError

            raise ConfigError.for_field("workers", workers, "must be 1 with --role learner")
        run_learner(**learner_args)  # type: ignore[arg-type]
        return
    own = sys.argv[1:]  # this very command line; click keeps the last value of a repeated option
    children = [
        Child(
            f"decision server {i}",
            child_command([*own, "--role", "decide", "--workers", "1", "--server-index", str(i)]),
        )
        for i in range(workers)
    ]
    if role == "all":
        args = ["learn", "--db", db, "--synchronous", synchronous]
        args += ["--busy-timeout", str(busy_timeout), "--blas-threads", str(blas_threads)]
        args += ["--model", model] if model else ["--demo-seed", str(demo_seed)]
        args += ["--demo-policy", demo_policy]
        args += ["--apprentice", apprentice] if apprentice else []
        # a standby learner waits for the lease: a take-over does not wait for a process start;
        # its metrics (if served) are on the next port
        for k, name in enumerate(("learner", "standby learner")):
            metrics = []
            if learner_metrics_port is not None:
                metrics = ["--metrics-port", str(learner_metrics_port + k)]
            children.append(Child(name, child_command([*args, *metrics])))
    typer.echo(
        f"supervising {workers} decision servers"
        + (" and two learners (one holds the role, one stands by)" if role == "all" else "")
        + " (SIGTERM stops them all)",
        err=True,
    )
    supervise(children)


def _ignore(sig: int, frame: FrameType | None) -> None:
    """Stands in for the default handlers while serving (see serve_policy)."""


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def purge(
    db: str = typer.Option(..., "--db", help="Event log: a SQLite file or a postgresql:// URL."),
    older_than: float = typer.Option(
        ..., "--older-than", help="Delete decisions and events older than this many days."
    ),
    checkpoint_dir: str | None = typer.Option(
        None,
        "--checkpoint-dir",
        help="The server's checkpoint folder (default <db>.checkpoints; required with a URL).",
    ),
) -> None:
    """Delete logged rows older than a number of days. Every entry after the oldest checkpoint
    that loads is kept, so a restart that falls back to it still reaches the logged state."""
    from .exits import run

    def body() -> None:
        from ..engine import Engine
        from ..errors import ConfigError, ModelFileError, ValidationError
        from ..service import Checkpointer
        from ..store import is_url, open_log

        if not older_than > 0:
            raise ValidationError.for_field("older_than", older_than, "must be > 0 days")
        if checkpoint_dir is None and is_url(db):
            raise ConfigError.for_field(
                "checkpoint_dir", None, "must be given when db is a PostgreSQL URL"
            )
        folder = Path(checkpoint_dir) if checkpoint_dir else Path(f"{db}.checkpoints")
        # must_exist: maintenance commands never create an event log by accident
        with open_log(db, hmac_key=None, must_exist=True) as log:
            lineage = log.get_meta("engine_model_id")
            usable = []
            for seq, path in Checkpointer(folder).list():
                try:
                    if Engine.load(path).model_id == lineage:
                        usable.append(seq)
                except ModelFileError:
                    typer.echo(f"checkpoint {path.name} does not load: not relied on", err=True)
            keep_after = min(usable) if usable else None
            if keep_after is None and lineage is not None:  # keep the whole served lineage
                keep_after = int(log.get_meta("engine_base_seq") or 0)
            counts = log.purge(older_than * 86400.0, keep_after=keep_after)
            log.truncate_wal()  # SQLite: no older copy of the purged rows stays in the -wal file
        typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))

    run(body)


def forget_user(
    user_id: str = typer.Argument(
        ..., help="The user id to forget, or '-' to read ids from stdin (one per line)."
    ),
    db: str = typer.Option(..., "--db", help="Event log: a SQLite file or a postgresql:// URL."),
    hmac_key_file: str | None = typer.Option(
        None, "--hmac-key-file", help="File holding the HMAC key (else $BANDIT_HMAC_KEY)."
    ),
) -> None:
    """Delete a user's profile and every logged row under their pseudonym.

    Offline: checkpoints of a stopped server may still hold the user's pending decisions; forget
    through the running server (POST /v1/admin/users/forget), which rewrites them."""
    from .exits import run

    def body() -> None:
        from ..store import load_hmac_key, open_log

        ids = [u.strip() for u in sys.stdin] if user_id == "-" else [user_id]
        key = load_hmac_key(file=hmac_key_file)
        total: dict[str, int] = {}
        with open_log(db, hmac_key=key, must_exist=True) as log:
            for uid in (u for u in ids if u):
                for k, v in log.forget_user(uid).items():
                    total[k] = total.get(k, 0) + v
            log.truncate_wal()  # SQLite: no older copy of the deleted rows stays in the -wal file
        typer.echo(" ".join(f"{k}={v}" for k, v in sorted(total.items())) or "nothing to forget")

    run(body)


def register(app: typer.Typer) -> None:
    """Add the server commands to the ``bandit`` app."""
    app.command("serve-policy")(serve_policy)
    app.command("purge")(purge)
    app.command("forget-user")(forget_user)
