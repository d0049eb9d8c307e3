"""Settings of the policy server (one frozen object, validated on construction)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..holdout import HoldoutPlan
from ..policies.registry import POLICIES
from ..store import Synchronous, is_url, redact
from .auth import ROLES, Role, Secret

__all__ = ["ServerSettings"]


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError.for_field(name, value, f"must be {kind}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError.for_field(name, value, "must be >= 0" if allow_zero else "must be > 0")


@dataclass(frozen=True)
class ServerSettings:
    """How the server runs.

    Parameters
    ----------
    db
        The event log: a SQLite file path, or a ``postgresql://`` URL
        (:func:`~bandit_engine.store.open_log`).
    api_token
        The bearer token of every role that has none of its own in ``role_tokens``.
    role_tokens
        ``{role: token}`` for the roles ``decide``, ``read`` and ``admin``
        (:mod:`bandit_engine.server.auth`); ``api_token`` stands in for a role left out.
    model
        Saved engine file, or ``None`` for the embedded demo engine (``demo_seed``).
    demo_seed
        Seed of the demo engine.
    demo_policy
        Registered policy of the demo engine (default ``pair_ts``, the default contextual
        policy), optionally with hyperparameters as on the command line of ``bandit simulate``
        (``fixed_rule:column=deal.discount``). A restart resumes whatever the checkpoints hold, whichever policy is named.
    host, port
        Where uvicorn listens (loopback by default).
    synchronous
        Durability level (see :mod:`bandit_engine.store`; on PostgreSQL the session's
        ``synchronous_commit``).
    checkpoint_dir
        Folder of model checkpoints (default ``<db>.checkpoints`` for a SQLite file; required with
        a PostgreSQL URL, which names no folder).
    checkpoint_every, checkpoint_seconds
        Write a checkpoint after this many decisions or this many seconds, whichever comes first
        (only when something changed).
    checkpoint_keep
        How many checkpoints to keep (older ones are deleted; a corrupt latest one falls back to the
        previous).
    max_body_bytes
        Larger request bodies are refused with 413.
    max_batch
        Most requests committed in one transaction (group commit).
    commit_delay
        Longest a request waits for more requests to join its transaction (seconds).
    advance_interval
        Seconds between timer-driven closings of due attribution windows.
    busy_timeout
        Seconds a write waits for another process's lock before failing.
    fast_path
        Serve ``POST /v1/decisions`` and ``POST /v1/events`` from the raw ASGI layer (same models,
        handlers and errors as the FastAPI routes, less per-request overhead).
    fork_checkpoints
        Write periodic checkpoints from a forked child (POSIX; see
        :class:`~bandit_engine.server.worker.EngineWorker`).
    accept_rollback
        Start even when the purged journal cannot bring the newest usable checkpoint up to the
        logged state (learning since that checkpoint is lost); refused by default.
    role
        ``"all"`` (one process decides and learns, with checkpoints: the default) or ``"decide"``
        (a decision server of the split roles: decides with the newest model version the
        learner published and never learns; :mod:`bandit_engine.server.roles`). A decision
        server writes no checkpoints, so ``checkpoint_dir`` is not needed for it.
    refresh_interval
        Seconds between a decision server's checks for a newer model version.
    server_index
        A decision server's number among its peers (seeds its random generator).
    rules
        A TOML file of business rules (:class:`~bandit_engine.rules.Rules`), applied on top of
        whatever the model or checkpoint holds; ``None`` keeps the model's own.
    apprentice
        Apprentice mode: the policy spec of the rule to serve (``"fixed_rule:column=3"``) while
        the model's policy learns from its traffic (:mod:`bandit_engine.evaluation.apprentice`).
    holdout
        Holdout groups (:class:`~bandit_engine.holdout.HoldoutPlan`) kept on control policies,
        or ``None``; set on the served engine at every start.
    dashboard_refresh
        Seconds after which a view of ``/dashboard`` starts a background refresh of its report
        (:mod:`bandit_engine.server.dashboard`).
    public_dp_epsilon, dp_budget, dp_cap, public_dp_refresh
        The public view's differentially private release: its epsilon, the ledger's total
        budget, decisions counted per user, and the seconds a release is reused before a new
        one spends budget again (the view is off unless both epsilons are set).
    """

    db: str = field(repr=False)  # a URL may hold a password (show it with store.redact)
    api_token: Secret = field(repr=False)
    role_tokens: Mapping[Role, Secret] = field(default_factory=dict, repr=False)
    model: str | None = None
    demo_seed: int = 0
    demo_policy: str = "pair_ts"
    host: str = "127.0.0.1"
    port: int = 8080
    synchronous: Synchronous = "NORMAL"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 10_000
    checkpoint_seconds: float = 300.0
    checkpoint_keep: int = 3
    max_body_bytes: int = 65_536
    max_batch: int = 256
    commit_delay: float = 0.002
    advance_interval: float = 1.0
    busy_timeout: float = 30.0
    fast_path: bool = True
    fork_checkpoints: bool = True
    accept_rollback: bool = False
    # issue 12: the split roles (server/roles.py)
    role: str = "all"
    refresh_interval: float = 2.0
    server_index: int = 0
    rules: str | None = None
    apprentice: str | None = None
    holdout: HoldoutPlan | None = None
    # issue 13 / 15: the dashboard (server/dashboard.py)
    dashboard_refresh: float = 10.0
    public_dp_epsilon: float | None = None
    dp_budget: float | None = None
    dp_cap: int = 20
    public_dp_refresh: float = 86_400.0

    def __post_init__(self) -> None:
        if not isinstance(self.api_token, Secret):
            raise ConfigError.for_field(
                "api_token", type(self.api_token).__name__, "must be a Secret (see load_api_token)"
            )
        for role, token in self.role_tokens.items():
            if role not in ROLES:
                raise ConfigError.for_field("role_tokens", role, f"must name one of {list(ROLES)}")
            if not isinstance(token, Secret):
                raise ConfigError.for_field(
                    f"role_tokens.{role}", type(token).__name__, "must be a Secret"
                )
        if self.role not in ("all", "decide"):
            raise ConfigError.for_field("role", self.role, "must be 'all' or 'decide'")
        _positive("refresh_interval", self.refresh_interval)
        _positive("server_index", self.server_index, integer=True, allow_zero=True)
        if is_url(self.db) and self.checkpoint_dir is None and self.role == "all":
            raise ConfigError.for_field(
                "checkpoint_dir",
                None,
                f"must be given when db is a PostgreSQL URL ({redact(self.db)}): a URL names no "
                "folder to put checkpoints beside",
            )
        if self.synchronous not in ("OFF", "NORMAL", "FULL"):
            raise ConfigError.for_field(
                "synchronous", self.synchronous, "must be 'OFF', 'NORMAL' or 'FULL'"
            )
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port < 65536
        ):
            raise ConfigError.for_field("port", self.port, "must be an integer in [0, 65535]")
        _positive("demo_seed", self.demo_seed, integer=True, allow_zero=True)
        if not isinstance(self.demo_policy, str) or (
            self.demo_policy.partition(":")[0].strip() not in POLICIES
        ):
            raise ConfigError.for_field(
                "demo_policy", self.demo_policy, f"must be a registered policy ({sorted(POLICIES)})"
            )
        from ..simulation.policy_spec import parse_policy_spec

        parse_policy_spec(self.demo_policy, option="demo_policy")  # names and keys checked
        _positive("checkpoint_every", self.checkpoint_every, integer=True)
        _positive("checkpoint_seconds", self.checkpoint_seconds)
        _positive("checkpoint_keep", self.checkpoint_keep, integer=True)
        _positive("max_body_bytes", self.max_body_bytes, integer=True)
        _positive("max_batch", self.max_batch, integer=True)
        _positive("commit_delay", self.commit_delay, allow_zero=True)
        _positive("advance_interval", self.advance_interval)
        _positive("busy_timeout", self.busy_timeout)
        _positive("dashboard_refresh", self.dashboard_refresh, allow_zero=True)
        _positive("dp_cap", self.dp_cap, integer=True)
        _positive("public_dp_refresh", self.public_dp_refresh, allow_zero=True)
        for name in ("public_dp_epsilon", "dp_budget"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if (
            self.public_dp_epsilon is not None
            and self.dp_budget is not None
            and self.public_dp_epsilon > self.dp_budget
        ):
            raise ConfigError.for_field(
                "public_dp_epsilon",
                self.public_dp_epsilon,
                f"must be at most dp_budget ({self.dp_budget})",
            )

    @property
    def tokens(self) -> dict[Role, Secret]:
        """The token of each role (its own, else ``api_token``)."""
        return {role: self.role_tokens.get(role, self.api_token) for role in ROLES}

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(f"{self.db}.checkpoints")
