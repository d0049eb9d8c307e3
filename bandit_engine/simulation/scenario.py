"""Scenarios: everything one ``bandit simulate`` run needs, from a TOML file or embedded defaults.

A scenario file is TOML (read with :mod:`tomllib`). Every section is optional; a missing key takes
its default. Unknown keys and bad values fail with a :class:`~bandit_engine.errors.ConfigError`
naming the key, the value and the file, for example::

    simulations/bad.toml: run.roundz is not a run setting (['rounds', 'seed', 'seeds']), got 5

Layout (all keys shown with their defaults where one exists)::

    name = "baseline"                 # shown in the report
    description = "..."

    [run]
    rounds = 20000                    # decisions per seed (every policy makes each one)
    seeds = 3                         # independent worlds + streams; means and CIs over them
    seed = 0                          # first seed; seeds are seed, seed + 1, ...
    world_seed = 7                    # optional: one fixed world for every seed

    [world]                           # any WorldConfig field (bandit_engine.simulation.world)
    n_users = 2000
    [world.drift]                     # DriftConfig: kind = "none" | "abrupt" | "gradual", ...

    [rewards]                         # RewardSpec: click, order, value_weight, cap, window, ...

    [orders]
    delay = "none"                    # "none": orders at click time; "exponential": delayed
    mean_delay_hours = 2.0            # mean of the exponential delay
    value_noise = 0.3                 # sd of the log-normal (mean 1) noise on order values

    [[policies]]                      # policies under test: name + hyperparameters (+ label)
    name = "linucb"
    alpha = 0.1

    [[controls]]                      # control groups, same stream and outcomes (CRN)
    name = "uniform"

    [new_users]                       # cold start (a): a wave of users with no profile at all
    at = 0.5                          # fraction of the run when the wave starts arriving
    users = 300                       # size of the wave
    share = 0.3                       # share of arrivals from the wave from then on
    first_k = 5                       # their first k decisions are scored
    city = "shanghai"                 # optional: put the whole wave in one city

    [new_bundles]                     # cold start (b): deals / courses added mid-run
    at = 0.5
    deals = 2
    courses = 1

    [replay]                          # replay of a uniform-random log (Li et al. 2011)
    rounds = 20000                    # logged decisions per seed (default: run.rounds)
    policy = "linucb:alpha=0.1"       # evaluated policy (default: the first policy)
    truth_runs = 5                    # live runs averaged for the simulator's true value

    [report]
    curve_points = 1000               # rows per policy in curves.csv
    block = 500                       # rounds per block in drift / new-bundle curves
    recovery = 0.9                    # drift: recovered when back at this share of pre-drift level
    fair_share_tolerance = 0.8        # new bundles: "reached" at this share of their fair share

A policy (in a file, in ``--policy`` / ``--control`` or in ``replay.policy``) is a
:class:`~bandit_engine.simulation.policy_spec.PolicySpec`, on the command line
``NAME[:key=value,...]`` (:mod:`~bandit_engine.simulation.policy_spec`).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import BanditError, ConfigError, NotFoundError
from ..rewards import RewardSpec
from .policy_spec import PolicySpec, parse_policy_spec
from .population import CITIES
from .world_config import WorldConfig

__all__ = [
    "DEFAULT_SCENARIO",
    "NewBundlesSettings",
    "NewUsersSettings",
    "OrderSettings",
    "ReplaySettings",
    "ReportSettings",
    "RunSettings",
    "Scenario",
    "default_scenario",
    "load_scenario",
]

T = TypeVar("T")


# -- small validators (ConfigError naming the dotted key) ------------------------------------
def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError.for_field(key, value, "must be an integer")
    if value < minimum:
        raise ConfigError.for_field(key, value, f"must be >= {minimum}")
    return value


def _float(
    key: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError.for_field(key, value, "must be a finite number")
    v = float(value)
    if (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError.for_field(key, value, f"must be in {lb}{low:g}, {high:g}{hb}")
    return v


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError.for_field(key, value, "must be a non-empty string")
    return value


def _table(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError.for_field(key, value, "must be a table of settings")
    return value


def _known(section: str, data: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        k = unknown[0]
        prefix = f"{section}." if section else ""
        raise ConfigError.for_field(
            f"{prefix}{k}", data[k], f"is not a {section or 'scenario'} setting ({sorted(known)})"
        )


def _settings(cls: type[T], section: str, data: Any) -> T:
    """Build a settings dataclass from a table: unknown keys rejected, defaults for missing ones."""
    table = _table(section, data)
    _known(section, table, [f.name for f in fields(cls)])  # type: ignore[arg-type]
    return cls(**dict(table))


def _policy_from_table(key: str, data: Any) -> PolicySpec:
    if isinstance(data, str):
        try:
            return parse_policy_spec(data, option=key)
        except ConfigError as exc:
            raise ConfigError(exc.message, field=key, value=data) from None
    table = dict(_table(key, data))
    if "name" not in table:
        raise ConfigError.for_field(f"{key}.name", None, "is required")
    name = table.pop("name")
    label = table.pop("label", None)
    try:
        return PolicySpec.create(name, table, label)
    except ConfigError as exc:
        raise ConfigError(
            f"{key}.{exc.message}", field=f"{key}.{exc.field}", value=exc.value
        ) from None


def _policies(key: str, data: Any) -> tuple[PolicySpec, ...]:
    if not isinstance(data, list):
        raise ConfigError.for_field(key, data, "must be an array of tables ([[...]]) of policies")
    return tuple(_policy_from_table(f"{key}[{i}]", item) for i, item in enumerate(data))


# -- settings sections -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """How long and how often: ``rounds`` decisions per seed, ``seeds`` seeds from ``seed``.

    Each seed draws its own world, arrival stream, outcomes and policy randomness, so intervals
    over seeds cover world-to-world variation too. ``world_seed`` fixes the world instead (every
    seed then plays the same market; intervals cover only the run's own randomness).
    """

    rounds: int = 20000
    seeds: int = 3
    seed: int = 0
    world_seed: int | None = None

    def __post_init__(self) -> None:
        _int("run.rounds", self.rounds, 1)
        _int("run.seeds", self.seeds, 1)
        _int("run.seed", self.seed, 0)
        if self.world_seed is not None:
            _int("run.world_seed", self.world_seed, 0)


@dataclass(frozen=True)
class OrderSettings:
    """When orders arrive and how noisy their value is.

    ``delay="none"``: an order is reported at the click. ``"exponential"``: after an exponential
    delay of mean ``mean_delay_hours``; an order later than the attribution window is reported and
    counted as late by the engine (kept, never learned), as in production. ``value_noise`` is the
    standard deviation of ``log`` of a mean-one log-normal factor on the true order value.
    """

    delay: Literal["none", "exponential"] = "none"
    mean_delay_hours: float = 2.0
    value_noise: float = 0.3

    def __post_init__(self) -> None:
        if self.delay not in ("none", "exponential"):
            raise ConfigError.for_field(
                "orders.delay", self.delay, "must be 'none' or 'exponential'"
            )
        _float("orders.mean_delay_hours", self.mean_delay_hours, 0.0, 24.0 * 365, low_open=True)
        _float("orders.value_noise", self.value_noise, 0.0, 3.0)


@dataclass(frozen=True)
class NewUsersSettings:
    """Cold start (a): from ``at`` (fraction of the run) a wave of ``users`` new users (no row on
    either platform) makes up ``share`` of the arrivals; their first ``first_k`` decisions are
    scored against the oracle and the controls."""

    at: float = 0.5
    users: int = 300
    share: float = 0.3
    first_k: int = 5
    city: str | None = None

    def __post_init__(self) -> None:
        _float("new_users.at", self.at, 0.0, 1.0, high_open=True)
        _int("new_users.users", self.users, 1)
        _float("new_users.share", self.share, 0.0, 1.0, low_open=True)
        _int("new_users.first_k", self.first_k, 1)
        if self.city is not None:
            _str("new_users.city", self.city)


@dataclass(frozen=True)
class NewBundlesSettings:
    """Cold start (b): at ``at`` (fraction of the run) ``deals`` new deals and ``courses`` new
    courses join the world and every engine's catalog, with their bundles."""

    at: float = 0.5
    deals: int = 2
    courses: int = 0

    def __post_init__(self) -> None:
        _float("new_bundles.at", self.at, 0.0, 1.0, high_open=True)
        _int("new_bundles.deals", self.deals, 0)
        _int("new_bundles.courses", self.courses, 0)
        if self.deals + self.courses == 0:
            raise ConfigError.for_field(
                "new_bundles.deals", self.deals, "plus new_bundles.courses must be >= 1"
            )


@dataclass(frozen=True)
class ReplaySettings:
    """Replay evaluation (Li et al., WSDM 2011) of ``policy`` on a uniform-random log of
    ``rounds`` decisions per seed, beside its true value from ``truth_runs`` live runs."""

    rounds: int | None = None
    policy: PolicySpec | None = None
    truth_runs: int = 5

    def __post_init__(self) -> None:
        if self.rounds is not None:
            _int("replay.rounds", self.rounds, 10)
        _int("replay.truth_runs", self.truth_runs, 1)


@dataclass(frozen=True)
class ReportSettings:
    """Resolution of the curves and thresholds of the cold-start and drift summaries."""

    curve_points: int = 1000
    block: int = 500
    recovery: float = 0.9
    fair_share_tolerance: float = 0.8

    def __post_init__(self) -> None:
        _int("report.curve_points", self.curve_points, 2)
        _int("report.block", self.block, 10)
        _float("report.recovery", self.recovery, 0.0, 1.0, low_open=True)
        _float("report.fair_share_tolerance", self.fair_share_tolerance, 0.0, 1.0, low_open=True)


_SECTIONS = (
    "name",
    "description",
    "run",
    "world",
    "rewards",
    "orders",
    "policies",
    "controls",
    "new_users",
    "new_bundles",
    "replay",
    "report",
)


@dataclass(frozen=True)
class Scenario:
    """One simulation: a world, a reward, policies and controls, optional cold-start / drift /
    replay parts. ``source`` is the file it came from (for error messages), ``None`` if embedded.
    """

    name: str = "baseline"
    description: str = ""
    world: WorldConfig = field(default_factory=WorldConfig)
    rewards: RewardSpec = field(default_factory=RewardSpec)
    run: RunSettings = field(default_factory=RunSettings)
    orders: OrderSettings = field(default_factory=OrderSettings)
    policies: tuple[PolicySpec, ...] = ()
    controls: tuple[PolicySpec, ...] = ()
    new_users: NewUsersSettings | None = None
    new_bundles: NewBundlesSettings | None = None
    replay: ReplaySettings | None = None
    report: ReportSettings = field(default_factory=ReportSettings)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.policies and not self.controls:
            raise ConfigError.for_field("policies", [], "must name at least one policy")
        if self.new_users is not None and self.new_users.city is not None:
            cities = list(CITIES[: self.world.n_cities])
            if self.new_users.city not in cities:
                raise ConfigError.for_field(
                    "new_users.city", self.new_users.city, f"must be one of the world's {cities}"
                )
        if self.replay is not None and self.replay.policy is None and not self.policies:
            raise ConfigError.for_field(
                "replay.policy", None, "is required when the scenario has no [[policies]]"
            )
        if self.world.bundles == "grid":
            # a grid world lists no bundles: no mid-run additions of listed bundles, no replay
            # of a listed uniform log (both need a bundle table)
            for key in ("new_bundles", "replay"):
                if getattr(self, key) is not None:
                    raise ConfigError.for_field(
                        "world.bundles", "grid", f"cannot be combined with [{key}] yet"
                    )

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Scenario:
        """Validate a parsed TOML document. Errors name the key, the value and ``source``."""
        return _in_source(source, lambda: cls._from_dict(data, source))

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any], source: str | None) -> Scenario:
        data = _table("scenario", data)
        _known("", data, _SECTIONS)
        kw: dict[str, Any] = {"source": source}
        if "name" in data:
            kw["name"] = _str("name", data["name"])
        if "description" in data:
            if not isinstance(data["description"], str):
                raise ConfigError.for_field("description", data["description"], "must be a string")
            kw["description"] = data["description"]
        if "world" in data:
            kw["world"] = _prefixed("world", lambda: WorldConfig.from_dict(data["world"]))
        if "rewards" in data:
            rewards = _table("rewards", data["rewards"])
            kw["rewards"] = _prefixed("rewards", lambda: RewardSpec.from_dict(rewards))
        for key, cls_ in (
            ("run", RunSettings),
            ("orders", OrderSettings),
            ("new_users", NewUsersSettings),
            ("new_bundles", NewBundlesSettings),
            ("report", ReportSettings),
        ):
            if key in data:
                kw[key] = _settings(cls_, key, data[key])
        for key in ("policies", "controls"):
            if key in data:
                kw[key] = _policies(key, data[key])
        if "replay" in data:
            table = dict(_table("replay", data["replay"]))
            _known("replay", table, [f.name for f in fields(ReplaySettings)])
            if "policy" in table:
                table["policy"] = _policy_from_table("replay.policy", table["policy"])
            kw["replay"] = ReplaySettings(**table)
        scenario = cls(**kw)
        scenario.check_policies()
        return scenario

    def check_policies(self) -> None:
        """Build every policy once: bad hyperparameter values fail before the run starts."""
        groups: list[tuple[str, Sequence[PolicySpec]]] = [
            ("policies", self.policies),
            ("controls", self.controls),
        ]
        if self.replay is not None and self.replay.policy is not None:
            groups.append(("replay.policy", [self.replay.policy]))
        for key, specs in groups:
            for i, spec in enumerate(specs):
                where = key if key == "replay.policy" else f"{key}[{i}]"
                try:
                    spec.check()
                except ConfigError as exc:
                    raise ConfigError(
                        f"{where}: {exc.message}", field=f"{where}.{exc.field}", value=exc.value
                    ) from None

    def with_overrides(
        self,
        *,
        rounds: int | None = None,
        seeds: int | None = None,
        seed: int | None = None,
        policies: Sequence[PolicySpec] | None = None,
        controls: Sequence[PolicySpec] | None = None,
    ) -> Scenario:
        """A copy with command-line overrides applied (``None`` keeps the scenario's value)."""
        run = self.run
        run = replace(
            run,
            rounds=run.rounds if rounds is None else rounds,
            seeds=run.seeds if seeds is None else seeds,
            seed=run.seed if seed is None else seed,
        )
        return replace(
            self,
            run=run,
            policies=self.policies if policies is None else tuple(policies),
            controls=self.controls if controls is None else tuple(controls),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready) describing the scenario, as recorded in ``summary.json``."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "run": _asdict(self.run),
            "world": self.world.to_dict(),
            "rewards": self.rewards.to_dict(),
            "orders": _asdict(self.orders),
            "policies": [p.to_dict() for p in self.policies],
            "controls": [p.to_dict() for p in self.controls],
            "report": _asdict(self.report),
        }
        if self.new_users is not None:
            out["new_users"] = _asdict(self.new_users)
        if self.new_bundles is not None:
            out["new_bundles"] = _asdict(self.new_bundles)
        if self.replay is not None:
            rep = _asdict(self.replay)
            rep["policy"] = None if self.replay.policy is None else self.replay.policy.to_dict()
            out["replay"] = rep
        return out


def _asdict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _prefixed(prefix: str, build: Callable[[], T]) -> T:
    """Run ``build``; make the field of a ConfigError it raises start with ``prefix.``."""
    try:
        return build()
    except ConfigError as exc:
        f = exc.field or ""
        if f.startswith(prefix + ".") or f == prefix:
            raise
        msg = exc.message
        if f and msg.startswith(f):
            msg = msg[len(f) :]
            name = f"{prefix}.{f}"
            raise ConfigError(f"{name}{msg}", field=name, value=exc.value) from None
        raise ConfigError(f"{prefix}: {msg}", field=prefix, value=exc.value) from None
    except TypeError as exc:  # a wrong-typed value reaching a dataclass constructor
        raise ConfigError(f"{prefix}: {exc}", field=prefix) from None


def _in_source(source: str | None, build: Callable[[], T]) -> T:
    """Prefix every ConfigError raised by ``build`` with the file it concerns."""
    try:
        return build()
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(f"{source}: {exc.message}", field=exc.field, value=exc.value) from None
    except TypeError as exc:
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}{exc}", field="scenario") from None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a TOML scenario file.

    Raises :class:`~bandit_engine.errors.NotFoundError` for a missing file and
    :class:`~bandit_engine.errors.ConfigError` (naming key, value and file) for invalid content.
    """
    p = Path(path)
    source = str(path)
    if not p.is_file():
        raise NotFoundError.for_field("scenario", source, "is not a file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{source}: not valid TOML ({exc})", field="scenario", value=source
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source}: not UTF-8 text ({exc})", field="scenario", value=source
        ) from None
    try:
        return Scenario.from_dict(data, source=source)
    except BanditError:
        raise
    except ValueError as exc:  # a validator outside our error hierarchy
        raise ConfigError(f"{source}: {exc}", field="scenario", value=source) from None


#: The embedded baseline (``bandit simulate`` without arguments). ``simulations/baseline.toml``
#: holds the same settings; a test keeps the two equal.
DEFAULT_SCENARIO: dict[str, Any] = {
    "name": "baseline",
    "description": (
        "The default contextual policy (pair_ts: one shared model over user x bundle pair "
        "features, live behaviour and a per-bundle term, explored by Thompson sampling) against three control groups (uniform "
        "random, most popular, highest discount) in a small two-platform world: 3 cities, "
        "12 deals x 5 courses, 2000 users."
    ),
    "run": {"rounds": 25000, "seeds": 3, "seed": 0, "world_seed": 0},
    "world": {
        "n_users": 2000,
        "n_cities": 3,
        "n_deals": 12,
        "n_courses": 5,
        "arrivals_per_day": 20000.0,
    },
    "rewards": {"click": 1.0, "order": 2.0, "value_weight": 0.01, "window": 1800.0},
    "orders": {"delay": "none", "value_noise": 0.3},
    "policies": [{"name": "pair_ts"}],
    "controls": [
        {"name": "uniform"},
        {"name": "popularity", "epsilon": 0.05},
        {"name": "fixed_rule", "column": "deal.discount", "label": "highest discount"},
    ],
}


def default_scenario() -> Scenario:
    """The embedded baseline scenario (no file needed)."""
    return Scenario.from_dict(DEFAULT_SCENARIO)
