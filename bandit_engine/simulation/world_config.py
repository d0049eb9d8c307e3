"""Settings of the synthetic world: :class:`WorldConfig`, its :class:`DriftConfig`, reward weights.

Every field is validated on construction and errors name the field
(``ConfigError: n_users must be >= 1, got 0``). What the settings mean for the generated world is
documented in :mod:`bandit_engine.simulation.world`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import BanditError, ConfigError, ValidationError
from ..policies.base import check_in_range, check_positive
from .population import CITIES

__all__ = [
    "DriftConfig",
    "DriftKind",
    "RewardWeights",
    "RewardWeightsLike",
    "WorldConfig",
    "check_finite",
    "check_int",
    "check_keys",
    "parse_reward_weights",
]

DriftKind = Literal["none", "abrupt", "gradual"]


def check_int(
    name: str,
    value: Any,
    low: int,
    high: int | None = None,
    error: type[BanditError] = ConfigError,
) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise error.for_field(name, value, "must be an integer")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise error.for_field(name, value, f"must be {bound}")
    return int(value)


def check_finite(name: str, value: Any, error: type[BanditError] = ConfigError) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise error.for_field(name, value, "must be a finite number")
    if not math.isfinite(value):
        raise error.for_field(name, value, "must be a finite number")
    return float(value)


def check_keys(
    data: Mapping[str, Any],
    known: set[str],
    prefix: str,
    what: str,
    error: type[BanditError] = ConfigError,
) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise error.for_field(
            prefix + unknown[0], data[unknown[0]], f"is not a {what} setting ({sorted(known)})"
        )


@dataclass(frozen=True)
class DriftConfig:
    """Preference drift (see :mod:`bandit_engine.simulation.response` for its form).

    Parameters
    ----------
    kind
        ``"none"``, ``"abrupt"`` (tastes switch at ``at_days``) or ``"gradual"`` (linear blend over
        ``duration_days`` starting at ``at_days``).
    at_days
        Days after ``WorldConfig.start_time`` when the drift starts. Must be >= 0.
    duration_days
        Length of a gradual drift. Must be > 0.
    strength
        Share of taste replaced, in [0, 1]: 0 changes nothing, 1 draws tastes afresh.
    """

    kind: DriftKind = "none"
    at_days: float = 7.0
    duration_days: float = 7.0
    strength: float = 0.8

    def __post_init__(self) -> None:
        if self.kind not in ("none", "abrupt", "gradual"):
            raise ConfigError.for_field(
                "drift.kind", self.kind, "must be 'none', 'abrupt' or 'gradual'"
            )
        check_positive("drift.at_days", self.at_days, allow_zero=True)
        check_positive("drift.duration_days", self.duration_days)
        check_in_range("drift.strength", self.strength, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftConfig:
        if not isinstance(data, Mapping):
            raise ConfigError.for_field("drift", data, "must be a mapping of drift settings")
        check_keys(data, {f.name for f in fields(cls)}, "drift.", "drift")
        return cls(**dict(data))


@dataclass(frozen=True)
class WorldConfig:
    """Settings of a synthetic world. All fields are validated on construction.

    Parameters
    ----------
    n_users
        Users generated (more can be added with :meth:`World.add_new_users`).
    p_both, p_knowledge_only, p_groupbuy_only
        Probability that a user has a profile on both platforms, on the knowledge platform only, on
        the group-buying platform only. The rest, ``1 - sum``, are new users (no profile at all).
    n_cities
        Number of cities, the first ones of :data:`~bandit_engine.simulation.population.CITIES`.
    n_deals, n_courses
        Catalog sizes at the start.
    bundles
        ``"all"`` (every deal x course pair), ``"grid"`` (every pair, never listed: engines get an
        unlisted catalog and must use a grid policy; for catalogs of a million pairs, see
        :mod:`~bandit_engine.simulation.grid_response`) or the number of pairs to sample (every
        deal gets at least one course when the number allows it).
    start_time
        Epoch seconds of the simulation start; profile histories lie before it.
    deal_min_days, deal_max_days
        Validity length of a deal, uniform in this range. Initial deals started up to 20 days before
        ``start_time``.
    base_ctr
        Mean click probability of a uniformly random eligible bundle at ``start_time``.
    order_rate
        Mean orders per click under that same uniform choice.
    noise_scale
        Standard deviation (logit units) of the hidden per-(user, bundle) taste term.
    noise_rank
        Rank of that hidden term.
    context_strength
        Multiplier of all user-specific effects; 0 makes the world (nearly) context-free.
    foreign_city_penalty
        Logit penalty of a deal outside the user's true city (clicks and orders).
    course_value_share
        Share of the course price counted in an order's value (how often the course is bought
        along with the deal).
    arrivals_per_day
        Mean arrival rate of :meth:`World.arrivals`.
    daily_amplitude
        Relative day/night swing of the arrival rate, in [0, 1).
    peak_hour
        Local hour of the busiest arrivals, in [0, 24).
    utc_offset_hours
        Offset of local time from UTC (8 for China).
    drift
        Preference drift, a :class:`DriftConfig`.
    """

    n_users: int = 5000
    p_both: float = 0.35
    p_knowledge_only: float = 0.20
    p_groupbuy_only: float = 0.30
    n_cities: int = 5
    n_deals: int = 40
    n_courses: int = 20
    bundles: Literal["all", "grid"] | int = "all"
    start_time: float = 1_704_067_200.0  # 2024-01-01T00:00:00Z
    deal_min_days: float = 30.0
    deal_max_days: float = 90.0
    base_ctr: float = 0.04
    order_rate: float = 0.2
    noise_scale: float = 0.22
    noise_rank: int = 16
    context_strength: float = 1.0
    foreign_city_penalty: float = 2.0
    course_value_share: float = 0.3
    arrivals_per_day: float = 20000.0
    daily_amplitude: float = 0.6
    peak_hour: float = 20.0
    utc_offset_hours: float = 8.0
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self) -> None:
        check_int("n_users", self.n_users, 1)
        shares = 0.0
        for name in ("p_both", "p_knowledge_only", "p_groupbuy_only"):
            shares += check_in_range(name, getattr(self, name), 0.0, 1.0)
        if shares > 1.0 + 1e-9:
            raise ConfigError.for_field(
                "p_both + p_knowledge_only + p_groupbuy_only", round(shares, 12), "must be <= 1"
            )
        check_int("n_cities", self.n_cities, 1, len(CITIES))
        check_int("n_deals", self.n_deals, 1)
        check_int("n_courses", self.n_courses, 1)
        if self.bundles not in ("all", "grid"):
            if isinstance(self.bundles, str):
                raise ConfigError.for_field(
                    "bundles", self.bundles, "must be 'all', 'grid' or a number of pairs"
                )
            check_int("bundles", self.bundles, 1, self.n_deals * self.n_courses)
        if check_finite("start_time", self.start_time) < 0:
            raise ConfigError.for_field("start_time", self.start_time, "must be >= 0")
        check_positive("deal_min_days", self.deal_min_days)
        check_positive("deal_max_days", self.deal_max_days)
        if self.deal_max_days < self.deal_min_days:
            raise ConfigError.for_field(
                "deal_max_days",
                self.deal_max_days,
                f"must be >= deal_min_days={self.deal_min_days}",
            )
        check_in_range("base_ctr", self.base_ctr, 0.0, 0.5, low_open=True)
        check_in_range("order_rate", self.order_rate, 0.0, 1.0, low_open=True, high_open=True)
        check_positive("noise_scale", self.noise_scale, allow_zero=True)
        check_int("noise_rank", self.noise_rank, 1, 256)
        check_positive("context_strength", self.context_strength, allow_zero=True)
        check_positive("foreign_city_penalty", self.foreign_city_penalty, allow_zero=True)
        check_in_range("course_value_share", self.course_value_share, 0.0, 1.0)
        check_positive("arrivals_per_day", self.arrivals_per_day)
        check_in_range("daily_amplitude", self.daily_amplitude, 0.0, 1.0, high_open=True)
        check_in_range("peak_hour", self.peak_hour, 0.0, 24.0, high_open=True)
        check_in_range("utc_offset_hours", self.utc_offset_hours, -12.0, 14.0)
        if not isinstance(self.drift, DriftConfig):
            raise ConfigError.for_field("drift", self.drift, "must be a DriftConfig")

    @property
    def p_new(self) -> float:
        """Share of new users (no profile on either platform)."""
        return max(0.0, 1.0 - self.p_both - self.p_knowledge_only - self.p_groupbuy_only)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible settings (``from_dict`` restores them)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "drift"}
        out["drift"] = self.drift.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldConfig:
        """Settings from a mapping (a JSON or TOML scenario); missing keys take their defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError.for_field("world", data, "must be a mapping of world settings")
        check_keys(data, {f.name for f in fields(cls)}, "", "world")
        kwargs = dict(data)
        if "drift" in kwargs:
            kwargs["drift"] = DriftConfig.from_dict(kwargs["drift"])
        return cls(**kwargs)


class RewardWeightsLike(Protocol):
    """Anything with the weights of :class:`bandit_engine.rewards.RewardSpec`."""

    @property
    def click(self) -> float: ...

    @property
    def order(self) -> float: ...

    @property
    def value_weight(self) -> float: ...


@dataclass(frozen=True)
class RewardWeights:
    """Reward of one decision: ``click`` per click, ``order`` per order, ``value_weight`` per CNY.

    Duck-compatible with :class:`bandit_engine.rewards.RewardSpec`, which may be passed instead.
    """

    click: float = 1.0
    order: float = 0.0
    value_weight: float = 0.0


def parse_reward_weights(
    reward_weights: RewardWeightsLike | Mapping[str, float] | None,
) -> tuple[float, float, float]:
    if reward_weights is None:
        return 1.0, 0.0, 0.0
    if isinstance(reward_weights, Mapping):
        check_keys(
            reward_weights,
            {"click", "order", "value_weight"},
            "reward_weights.",
            "reward",
            ValidationError,
        )
        get = reward_weights.get
        values = (get("click", 0.0), get("order", 0.0), get("value_weight", 0.0))
    else:
        try:
            values = (reward_weights.click, reward_weights.order, reward_weights.value_weight)
        except AttributeError:
            raise ValidationError.for_field(
                "reward_weights",
                reward_weights,
                "must have click, order and value_weight (a RewardWeights, RewardSpec or mapping)",
            ) from None
    click, order, value_w = (
        check_finite(f"reward_weights.{name}", v, ValidationError)
        for name, v in zip(("click", "order", "value_weight"), values, strict=True)
    )
    return click, order, value_w
