r"""A synthetic two-platform world: users, a catalog of (deal, course) bundles, true responses.

The world plays the market the engine is deployed in. It emits the tables the engine sees (a
knowledge-platform profile table, a group-buying profile table, deals, courses, bundles) and keeps
the hidden truth that decides what users do, so a simulation can score any policy against the
oracle.

Population
----------
Each user is on both platforms (share ``p_both``), the knowledge platform only, the group-buying
platform only, or neither (a *new* user, the rest). A user's hidden truth: city, age band, four
lifestyle factors (foodie, health, money, career) shared by both platforms, topic interests, cuisine
tastes, format tastes, price sensitivity ``s`` in (0, 1), a comfortable log ticket ``t``,
engagement ``e``, ``noise_rank`` unobservable taste factors ``h_u`` and an order-basket multiplier.
The tables are noisy summaries of it (:mod:`bandit_engine.simulation.population`): ``topics`` and
``cuisines`` come from sampled purchase histories, ``coupon_rate`` is a binomial share driven by
``s``, ``avg_ticket`` is ``exp(t)`` with noise, recency and ``orders_90d`` reflect ``e``. Users
absent from a platform have no row in its table; new users have no row anywhere but still have
hidden truth, including a city.

Response model
--------------
For user ``u`` and bundle ``b`` = (deal ``d``, course ``c``), with ``lp = log(price_d / 100)``,
``clp = log(price_c / 100)``, ``t' = t_u - log 100``, ``rating' = rating_c - 4.3``,
``cs = context_strength``::

    logit p_click = b0 + 0.3 e_u + member_u
        + cs * [ 0.25 taste_u(cuisine_d) + 0.5 listed_u(cuisine_d)
               + 0.25 interest_u(topic_c) + 0.5 listed_u(topic_c) + 0.2 format_u(format_c)
               - 0.25 (lp - t')^2 + (0.15 cookwine_u - 0.35 s_u) lp
               + (2.5 (s_u - 0.45) + 0.3 finance_u) discount_d - 0.3 s_u clp
               + 0.2 premium_u rating' ]
        + 1.0 discount_d + 0.3 rating' + q_b
        - foreign_city_penalty * [city_d != city_u]
        + noise_scale * h_u . g_b

    logit p_order|click = c0 + 0.25 e_u + member'_u
        + cs * [ 0.1 taste_u(cuisine_d) + 0.2 listed_u(cuisine_d) - 0.6 (lp - t')^2
               + 2.0 s_u discount_d ]
        - 0.2 lp + 0.5 discount_d - 0.15 clp + 0.5 q_b
        - foreign_city_penalty * [city_d != city_u]
        + 0.5 noise_scale * h_u . g_b

    order_value = basket_u * (price_d * (1 - discount_d) + course_value_share * price_c)

``listed_u(x)`` is 1 when the user's profile lists cuisine or topic ``x`` (a habit effect: people
come back to what they know), so the observable columns carry most of the signal. ``taste_u``
already contains the cross-domain terms (fitness interest adds to vegetarian, cooking/wine interest
to japanese and western); ``cookwine_u`` and ``finance_u`` are topic interests, so cooking and wine
learners accept pricier deals and finance learners respond more to discounts. ``member`` is
0 / 0.1 / 0.2 for none / basic / premium (``member'``: 0 / 0.05 / 0.15). ``q_b`` is a hidden
bundle quality (restaurant and course quality plus a topic x cuisine complementarity such as
wine + western), the part a context-free policy can learn. ``g_b ~ N(0, I / noise_rank)`` are
hidden bundle factors, so ``h_u . g_b`` has variance about 1 per (user, bundle) pair, fixed at
generation: idiosyncratic taste that no profile column reveals. It is a rank-``noise_rank``
interaction rather than i.i.d. noise per pair, which keeps memory at O((users + bundles) * rank) and
costs nothing per call; a policy that memorised per-user, per-bundle rewards could in principle
learn it, a model on profile features cannot.

``b0`` and ``c0`` are calibrated at generation by bisection so that, at ``start_time`` and under a
uniformly random choice among each user's eligible bundles (own city, valid deals), the mean click
probability is ``base_ctr`` and orders per click are ``order_rate``. With the defaults a user's best
eligible bundle has a click probability of about 13% on average, the oracle (per-user best bundle)
beats the best context-free choice (the best bundle of the user's city) by 1.7-2.0x, and a linear
model on profile x bundle features fitted to the true click logits explains 55-60% of the
within-user variance and beats that context-free choice by 1.2-1.4x (tests/test_world.py). :meth:`World.diagnostics`
measures the first numbers for any config.

Eligibility and unknown cities
------------------------------
:meth:`World.eligible` uses the user's *true* city and the deals' validity windows
(``valid_from <= t < valid_to``). The engine knows a city only from the group-buying table; its
default for an unknown city is to offer every city. That is harmless to the simulation: every bundle
has a true response, and deals outside the user's true city are penalised by
``foreign_city_penalty`` in both logits, so offering them is a real, learnable mistake.
:meth:`World.true_rates` accepts any bundle indices, so the runner should pass the engine's own
candidates (:meth:`World.bundle_indices` maps their ids).

Drift
-----
``DriftConfig(kind="abrupt", at_days=a)`` switches every user's tastes at ``start_time + a`` days;
``kind="gradual"`` blends the coefficients linearly over ``duration_days`` from there. Tastes move
to ``sqrt(1 - s^2) * old + s * (fresh + trend)`` (``s = strength``; cuisine, topic, format and
hidden factors; ``trend`` is shared by all users, so what is popular changes too) and the habit
terms fade by ``sqrt(1 - s^2)``; the intercepts are recalibrated for the drifted tastes, so the
overall click and order rates stay at their targets. Profile tables do not change: they describe
history before the drift, so after it they predict less and policies must keep learning. Catalog
attributes and price sensitivity do not drift.

Arrivals
--------
:meth:`World.arrivals` draws arrival times from a Poisson process of mean rate ``arrivals_per_day``
with intensity proportional to ``1 + daily_amplitude * cos(2 pi (hour - peak_hour) / 24)`` (``hour``
in local time, ``utc_offset_hours`` from UTC; amplitude 0 gives a flat rate), and users in
proportion to a hidden visit weight ``exp(0.5 e_u)``. The daily pattern is the same for every user.

Everything is deterministic: the same config and seed give identical tables and rates.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import BanditError, ConfigError, NotFoundError, ValidationError
from ..policies.base import check_in_range, check_positive, make_rng
from .population import (
    AGE_BANDS,
    CITIES,
    CUISINES,
    MEMBERSHIPS,
    SEGMENTS,
    TOPICS,
    CourseTruth,
    DealTruth,
    UserTruth,
    draw_courses,
    draw_deals,
    draw_users,
    groupbuy_table,
    knowledge_table,
)
from .response import (
    Layout,
    bundle_design,
    bundle_value,
    calibrate_intercepts,
    drift_users,
    user_weights,
)

__all__ = [
    "CatalogAddition",
    "DriftConfig",
    "RewardWeights",
    "World",
    "WorldConfig",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
DriftKind = Literal["none", "abrupt", "gradual"]

_DAY = 86400.0
# Users used to calibrate the intercepts: enough for the mean CTR to be within ~1% of its target.
_CALIBRATION_USERS = 4000


def _check_int(
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


def _check_finite(name: str, value: Any, error: type[BanditError] = ConfigError) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise error.for_field(name, value, "must be a finite number")
    if not math.isfinite(value):
        raise error.for_field(name, value, "must be a finite number")
    return float(value)


def _unknown_key(
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
    """Preference drift (see the module docstring for its form).

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
        _unknown_key(data, {f.name for f in fields(cls)}, "drift.", "drift")
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
        ``"all"`` (every deal x course pair) or the number of pairs to sample (every deal gets at
        least one course when the number allows it).
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
    bundles: Literal["all"] | int = "all"
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
        _check_int("n_users", self.n_users, 1)
        shares = 0.0
        for name in ("p_both", "p_knowledge_only", "p_groupbuy_only"):
            shares += check_in_range(name, getattr(self, name), 0.0, 1.0)
        if shares > 1.0 + 1e-9:
            raise ConfigError.for_field(
                "p_both + p_knowledge_only + p_groupbuy_only", round(shares, 12), "must be <= 1"
            )
        _check_int("n_cities", self.n_cities, 1, len(CITIES))
        _check_int("n_deals", self.n_deals, 1)
        _check_int("n_courses", self.n_courses, 1)
        if self.bundles != "all":
            _check_int("bundles", self.bundles, 1, self.n_deals * self.n_courses)
        if _check_finite("start_time", self.start_time) < 0:
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
        _check_int("noise_rank", self.noise_rank, 1, 256)
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
        _unknown_key(data, {f.name for f in fields(cls)}, "", "world")
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


@dataclass(frozen=True, eq=False)
class CatalogAddition:
    """What :meth:`World.add_deals` / :meth:`World.add_courses` added (new rows only)."""

    deals: pd.DataFrame
    courses: pd.DataFrame
    bundles: pd.DataFrame
    bundle_index: IntArray


def _sigmoid_inplace(z: FloatArray) -> FloatArray:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


class World:
    """A generated world. Build it with :meth:`World.generate`; the constructor is internal.

    Attributes
    ----------
    config, seed
        What it was generated from (``seed`` is ``None`` when a Generator was passed).
    knowledge, groupbuy, deals, courses, bundles
        The observable tables. Row ``i`` of ``bundles`` is bundle index ``i`` of
        :meth:`true_rates` and :meth:`eligible`; user index ``u`` has id ``f"U{u:06d}"``.
    click_intercept, order_intercept
        The calibrated ``b0`` and ``c0`` of the response model (before any drift).

    Notes
    -----
    Cost per call with the defaults (5000 users, 800 bundles, 2 cores): ``true_rates`` for 100
    bundles about 10 us (a few more inside a gradual drift's window), ``eligible`` 3-5 us,
    ``profile`` about 2 us; ``generate`` about 0.3-0.5 s.
    """

    def __init__(
        self,
        config: WorldConfig,
        seed: int | None,
        *,
        users: UserTruth,
        deals: DealTruth,
        courses: CourseTruth,
        pair_deal: IntArray,
        pair_course: IntArray,
        bundle_hidden: FloatArray,
        knowledge: pd.DataFrame,
        groupbuy: pd.DataFrame,
        knowledge_rows: IntArray,
        groupbuy_rows: IntArray,
        drift_rng: np.random.Generator,
        calibration_users: int = _CALIBRATION_USERS,
    ) -> None:
        self.config = config
        self.seed = seed
        self.knowledge = knowledge
        self.groupbuy = groupbuy
        self._layout = Layout(n_cities=config.n_cities, noise_rank=config.noise_rank)
        self._users = users
        self._deals = deals
        self._courses = courses
        self._pair_deal = pair_deal
        self._pair_course = pair_course
        self._bundle_hidden = bundle_hidden
        self._k_rows = knowledge_rows
        self._g_rows = groupbuy_rows
        self._records: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self._cuisine_trend = 0.6 * drift_rng.standard_normal(len(CUISINES))
        self._topic_trend = 0.6 * drift_rng.standard_normal(len(TOPICS))
        self._rebuild_catalog()
        W0 = self._weights(users)
        W1 = self._drifted_weights(users, drift_rng)
        n_cal = min(len(users), calibration_users)
        eligible = self._eligible_matrix(np.arange(n_cal), config.start_time)

        def calibrate(W: FloatArray) -> tuple[float, float]:
            return calibrate_intercepts(
                W[:n_cal],
                self._phi,
                eligible,
                base_ctr=config.base_ctr,
                order_rate=config.order_rate,
            )

        b0, c0 = calibrate(W0)
        self.click_intercept = b0
        self.order_intercept = c0
        # Drifted tastes get their own intercepts (calibrated on the same catalog), so drift
        # changes what users like, not how much they click overall.
        self._drift_intercepts = calibrate(W1) if W1 is not None else (b0, c0)
        self._W0 = self._add_intercepts(W0, (b0, c0))
        self._W1 = None if W1 is None else self._add_intercepts(W1, self._drift_intercepts)
        drift = config.drift
        self._drift_from = config.start_time + drift.at_days * _DAY
        self._drift_span = drift.duration_days * _DAY if drift.kind == "gradual" else 0.0

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def generate(
        cls, config: WorldConfig | None = None, seed: int | np.random.Generator = 0
    ) -> World:
        """Generate a world from ``config`` (defaults if ``None``); randomness only from ``seed``.

        Independent streams are spawned for users, each table, the catalog and drift, so for example
        changing ``n_deals`` leaves the users unchanged.
        """
        config = WorldConfig() if config is None else config
        if not isinstance(config, WorldConfig):
            raise ConfigError.for_field("config", config, "must be a WorldConfig")
        if seed is None:
            raise ConfigError.for_field("seed", seed, "must be an int or a numpy Generator")
        base = make_rng(seed)
        r_users, r_know, r_group, r_deals, r_courses, r_bundles, r_drift = base.spawn(7)
        segment_p = np.array(
            [config.p_both, config.p_knowledge_only, config.p_groupbuy_only, config.p_new]
        )
        segment_p = segment_p / segment_p.sum()
        users = draw_users(
            config.n_users,
            r_users,
            n_cities=config.n_cities,
            noise_rank=config.noise_rank,
            segment_p=segment_p,
        )
        seg = users.segment
        k_idx = np.flatnonzero((seg == 0) | (seg == 1))
        g_idx = np.flatnonzero((seg == 0) | (seg == 2))
        knowledge = knowledge_table(users, k_idx, r_know, config.start_time)
        groupbuy = groupbuy_table(users, g_idx, r_group, config.start_time)
        k_rows = np.full(config.n_users, -1, dtype=np.intp)
        k_rows[k_idx] = np.arange(k_idx.shape[0])
        g_rows = np.full(config.n_users, -1, dtype=np.intp)
        g_rows[g_idx] = np.arange(g_idx.shape[0])

        start = config.start_time - r_deals.uniform(0.0, 20.0, size=config.n_deals) * _DAY
        deals = draw_deals(
            config.n_deals,
            r_deals,
            n_cities=config.n_cities,
            valid_from=start,
            min_days=config.deal_min_days,
            max_days=config.deal_max_days,
            cover_cities=True,
        )
        courses = draw_courses(config.n_courses, r_courses, cover_topics=True)
        pair_deal, pair_course = _initial_pairs(config, r_bundles)
        hidden = r_bundles.standard_normal((pair_deal.shape[0], config.noise_rank))
        hidden /= math.sqrt(config.noise_rank)
        return cls(
            config,
            int(seed) if isinstance(seed, int | np.integer) else None,
            users=users,
            deals=deals,
            courses=courses,
            pair_deal=pair_deal,
            pair_course=pair_course,
            bundle_hidden=hidden,
            knowledge=knowledge,
            groupbuy=groupbuy,
            knowledge_rows=k_rows,
            groupbuy_rows=g_rows,
            drift_rng=r_drift,
        )

    def _weights(self, users: UserTruth) -> FloatArray:
        return user_weights(
            self._layout,
            users,
            context_strength=self.config.context_strength,
            noise_scale=self.config.noise_scale,
            foreign_city_penalty=self.config.foreign_city_penalty,
        )

    def _add_intercepts(self, W: FloatArray, intercepts: tuple[float, float]) -> FloatArray:
        W[:, self._layout.const, 0] += intercepts[0]
        W[:, self._layout.const, 1] += intercepts[1]
        return W

    def _drifted_weights(self, users: UserTruth, rng: np.random.Generator) -> FloatArray | None:
        """Coefficients after drift (without intercepts), or ``None`` without drift."""
        drift = self.config.drift
        if drift.kind == "none":
            return None
        moved = drift_users(
            users,
            rng,
            strength=drift.strength,
            cuisine_trend=self._cuisine_trend,
            topic_trend=self._topic_trend,
        )
        return self._weights(moved)

    def _rebuild_catalog(self) -> None:
        """Recompute bundle arrays and tables after the catalog changed."""
        self._phi = np.ascontiguousarray(
            bundle_design(
                self._layout,
                self._deals,
                self._courses,
                self._pair_deal,
                self._pair_course,
                self._bundle_hidden,
            )
        )
        self._value = bundle_value(
            self._deals,
            self._courses,
            self._pair_deal,
            self._pair_course,
            self.config.course_value_share,
        )
        self._b_city = self._deals.city[self._pair_deal]
        self._b_from = self._deals.valid_from[self._pair_deal]
        self._b_to = self._deals.valid_to[self._pair_deal]
        self._city_bundles = [
            np.flatnonzero(self._b_city == c) for c in range(self.config.n_cities)
        ]
        self.deals = self._deals.table(0)
        self.courses = self._courses.table(0)
        deal_ids = self.deals["deal_id"].to_numpy(dtype=object)[self._pair_deal]
        course_ids = self.courses["course_id"].to_numpy(dtype=object)[self._pair_course]
        bundle_ids = [f"{d}+{c}" for d, c in zip(deal_ids, course_ids, strict=True)]
        self.bundles = pd.DataFrame(
            {"deal_id": list(deal_ids), "course_id": list(course_ids), "bundle_id": bundle_ids}
        )
        self._bundle_pos = {b: i for i, b in enumerate(bundle_ids)}

    # -- sizes and ids --------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def n_bundles(self) -> int:
        return int(self._pair_deal.shape[0])

    def user_id(self, user_index: int) -> str:
        """The id of a user (``"U000042"``), also for users without any profile row."""
        return f"U{self._check_user(user_index):06d}"

    def segment(self, user_index: int) -> str:
        """``"both"``, ``"knowledge"``, ``"groupbuy"`` or ``"new"``."""
        return SEGMENTS[int(self._users.segment[self._check_user(user_index)])]

    def bundle_indices(self, bundle_ids: Sequence[str]) -> IntArray:
        """Rows of ``bundles`` for the given ids (for example the engine's candidates)."""
        out = np.empty(len(bundle_ids), dtype=np.intp)
        pos = self._bundle_pos
        for i, b in enumerate(bundle_ids):
            j = pos.get(b)
            if j is None:
                raise NotFoundError.for_field("bundle_id", b, "is not a bundle of this world")
            out[i] = j
        return out

    @property
    def truth(self) -> pd.DataFrame:
        """Hidden truth per user, for reports and tests only: never give it to the engine."""
        u = self._users
        return pd.DataFrame(
            {
                "user_id": [f"U{i:06d}" for i in range(len(u))],
                "segment": [SEGMENTS[s] for s in u.segment],
                "city": [CITIES[c] for c in u.city],
                "age_band": [AGE_BANDS[a] for a in u.age],
                "membership": [MEMBERSHIPS[m] for m in u.membership],
                "price_sensitivity": u.price_sensitivity,
                "comfortable_ticket": np.exp(u.log_ticket),
                "engagement": u.engagement,
                "foodie": u.lifestyle[:, 0],
                "health": u.lifestyle[:, 1],
                "money": u.lifestyle[:, 2],
                "career": u.lifestyle[:, 3],
                "basket": u.basket,
                "visit_weight": u.visit_weight,
            }
        )

    def _check_user(self, user_index: int) -> int:
        try:
            u = operator.index(user_index)
        except TypeError:
            raise ValidationError.for_field(
                "user_index", user_index, "must be an integer"
            ) from None
        if not 0 <= u < len(self._users):
            raise ValidationError.for_field(
                "user_index", user_index, f"must be in [0, {len(self._users) - 1}]"
            )
        return u

    # -- profiles ----------------------------------------------------------------------------------
    def profile(self, user_index: int) -> dict[str, dict[str, Any] | None]:
        """The user's table rows as ``{"knowledge": fields | None, "groupbuy": fields | None}``
        (``user_id`` included), the shape the engine's feature map takes. A fresh copy each call."""
        u = self._check_user(user_index)
        if self._records is None:
            self._records = (_records(self.knowledge), _records(self.groupbuy))
        k_records, g_records = self._records
        out: dict[str, dict[str, Any] | None] = {"knowledge": None, "groupbuy": None}
        # Users added after generation have no rows (and are past the end of these maps).
        k = int(self._k_rows[u]) if u < self._k_rows.shape[0] else -1
        g = int(self._g_rows[u]) if u < self._g_rows.shape[0] else -1
        if k >= 0:
            rec = dict(k_records[k])
            rec["topics"] = list(rec["topics"])
            out["knowledge"] = rec
        if g >= 0:
            rec = dict(g_records[g])
            rec["cuisines"] = list(rec["cuisines"])
            out["groupbuy"] = rec
        return out

    # -- responses ---------------------------------------------------------------------------------
    def drift_weight(self, t: float) -> float:
        """How far tastes have moved at time ``t``: 0 before the drift, 1 after it."""
        if self._W1 is None or t < self._drift_from:
            return 0.0
        if t >= self._drift_from + self._drift_span:  # an abrupt drift has span 0
            return 1.0
        return (t - self._drift_from) / self._drift_span

    def _user_matrix(self, u: int, t: float) -> FloatArray:
        """``W_u`` at ``t``: no arithmetic except inside a gradual drift's window."""
        W1 = self._W1
        if W1 is None or t < self._drift_from:
            out: FloatArray = self._W0[u]
            return out
        if t >= self._drift_from + self._drift_span:
            after: FloatArray = W1[u]
            return after
        w = (t - self._drift_from) / self._drift_span
        W0u = self._W0[u]
        moved: FloatArray = W0u + w * (W1[u] - W0u)
        return moved

    def true_rates(
        self, user_index: int, bundle_index: IntArray, t: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """True ``(p_click, p_order_given_click, order_value)`` of each bundle for a user at ``t``.

        Parameters
        ----------
        user_index
            Row of the user (``0 <= user_index < n_users``).
        bundle_index
            Integer array of bundle rows, any of them (eligible or not), shape ``(k,)``.
        t
            Epoch seconds (matters only for drift).

        Returns
        -------
        Three new arrays of shape ``(k,)``.
        """
        u = self._check_user(user_index)
        try:
            # (2, m) @ (m, k): each output row is contiguous. take() gathers faster than [].
            z = self._user_matrix(u, t).T @ self._phi.take(bundle_index, axis=0).T
            value = self._value.take(bundle_index) * self._users.basket[u]
        except (IndexError, TypeError):
            raise ValidationError.for_field(
                "bundle_index",
                bundle_index,
                f"must be an integer array of bundle rows in [0, {self.n_bundles - 1}]",
            ) from None
        p = _sigmoid_inplace(z)
        return p[0], p[1], value

    def expected_reward(
        self,
        user_index: int,
        bundle_index: IntArray,
        t: float,
        reward_weights: RewardWeightsLike | Mapping[str, float] | None = None,
    ) -> FloatArray:
        """Expected reward of each bundle, ``click pc + order pc po + value_weight pc po v``.

        ``reward_weights`` is a :class:`RewardWeights`, a ``RewardSpec`` or a mapping with keys
        ``click``, ``order``, ``value_weight``; ``None`` means clicks only. A reward cap or default
        reward of a ``RewardSpec`` is ignored: this is the expectation of the uncapped sum.
        """
        click, order, value_w = _weights_of(reward_weights)
        pc, po, v = self.true_rates(user_index, bundle_index, t)
        out: FloatArray = pc * (click + po * (order + value_w * v))
        return out

    # -- eligibility -------------------------------------------------------------------------------
    def eligible(self, user_index: int, t: float) -> IntArray:
        """Bundle rows eligible for the user at ``t``: deals of the user's true city, valid then."""
        u = self._check_user(user_index)
        idx = self._city_bundles[int(self._users.city[u])]
        keep = (self._b_from[idx] <= t) & (t < self._b_to[idx])
        out: IntArray = idx[keep]
        return out

    def _eligible_matrix(self, users: IntArray, t: float) -> NDArray[np.bool_]:
        valid = (self._b_from <= t) & (t < self._b_to)
        out: NDArray[np.bool_] = (self._users.city[users][:, None] == self._b_city[None, :]) & valid
        return out

    # -- arrivals ----------------------------------------------------------------------------------
    def arrivals(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        start: float | None = None,
        users: IntArray | None = None,
    ) -> tuple[FloatArray, IntArray]:
        """``n`` arrivals ``(times, user_indices)`` after ``start`` (default ``config.start_time``).

        Times follow the daily-pattern Poisson process of the module docstring (sorted, strictly
        after ``start``); users are drawn with replacement in proportion to their visit weight, from
        ``users`` if given (for example a wave returned by :meth:`add_new_users`), else from all.
        """
        n = _check_int("n", n, 0, error=ValidationError)
        if not isinstance(rng, np.random.Generator):
            raise ValidationError.for_field("rng", rng, "must be a numpy Generator")
        cfg = self.config
        t = float(cfg.start_time if start is None else start)
        pool = np.arange(self.n_users) if users is None else np.asarray(users, dtype=np.intp)
        if pool.shape[0] == 0:
            raise ValidationError.for_field("users", users, "must not be empty")
        if pool.min() < 0 or pool.max() >= self.n_users:
            raise ValidationError.for_field(
                "users", users, f"must be user indices in [0, {self.n_users - 1}]"
            )
        a = cfg.daily_amplitude
        rate_max = cfg.arrivals_per_day * (1.0 + a) / _DAY
        times: list[FloatArray] = []
        have = 0
        # Thinning: candidates at the peak rate, each kept with probability rate(t) / rate_max.
        while have < n:
            m = max(64, int(1.2 * (n - have) * (1.0 + a)))
            cand = t + np.cumsum(rng.exponential(1.0 / rate_max, size=m))
            hour = (cand / 3600.0 + cfg.utc_offset_hours) % 24.0
            accept = (1.0 + a * np.cos(2.0 * np.pi * (hour - cfg.peak_hour) / 24.0)) / (1.0 + a)
            kept = cand[rng.random(m) < accept]
            times.append(kept)
            have += kept.shape[0]
            t = float(cand[-1])
        out_t = np.concatenate(times)[:n] if times else np.empty(0)
        weights = self._users.visit_weight[pool]
        who = pool[rng.choice(pool.shape[0], size=n, p=weights / weights.sum())]
        return out_t, who.astype(np.intp)

    def stream(
        self, n_rounds: int, seed: int | np.random.Generator, *, start: float | None = None
    ) -> Iterator[tuple[float, int]]:
        """Yield ``n_rounds`` pairs ``(t, user_index)`` from :meth:`arrivals` (all users)."""
        times, who = self.arrivals(n_rounds, make_rng(seed), start=start)
        yield from zip(times.tolist(), who.tolist(), strict=True)

    # -- cold start --------------------------------------------------------------------------------
    def add_new_users(
        self, n: int, rng: np.random.Generator, *, city: str | None = None
    ) -> IntArray:
        """Add ``n`` new users (no profile on either platform) and return their indices.

        Their hidden truth follows the same model as everyone's (including drift); ``city`` puts
        them all in one city, else cities follow the population shares.
        """
        n = _check_int("n", n, 1, error=ValidationError)
        new = draw_users(
            n,
            rng,
            n_cities=self.config.n_cities,
            noise_rank=self.config.noise_rank,
            segment_p=np.array([0.0, 0.0, 0.0, 1.0]),
        )
        if city is not None:
            cities = CITIES[: self.config.n_cities]
            if city not in cities:
                raise ValidationError.for_field("city", city, f"must be one of {list(cities)}")
            new.city[:] = cities.index(city)
        W0 = self._add_intercepts(self._weights(new), (self.click_intercept, self.order_intercept))
        W1 = self._drifted_weights(new, rng)
        first = self.n_users
        self._users = self._users.concat(new)
        self._W0 = np.concatenate([self._W0, W0])
        if self._W1 is not None and W1 is not None:
            W1 = self._add_intercepts(W1, self._drift_intercepts)
            self._W1 = np.concatenate([self._W1, W1])
        return np.arange(first, first + n, dtype=np.intp)

    def add_deals(
        self, n: int, rng: np.random.Generator, *, t: float | None = None
    ) -> CatalogAddition:
        """Add ``n`` deals valid from ``t`` (default ``start_time``) and their bundles.

        With ``bundles="all"`` each new deal pairs with every course; otherwise with as many random
        courses as the average deal had at the start.
        """
        n = _check_int("n", n, 1, error=ValidationError)
        start = float(
            self.config.start_time if t is None else _check_finite("t", t, ValidationError)
        )
        new = draw_deals(
            n,
            rng,
            n_cities=self.config.n_cities,
            valid_from=np.full(n, start),
            min_days=self.config.deal_min_days,
            max_days=self.config.deal_max_days,
            cover_cities=False,
        )
        first = len(self._deals)
        self._deals = self._deals.concat(new)
        n_courses = len(self._courses)
        per = self._pairs_per("deal")
        pd_, pc_ = [], []
        for i in range(n):
            partners = (
                np.arange(n_courses) if per is None else np.sort(rng.choice(n_courses, per, False))
            )
            pd_.append(np.full(partners.shape[0], first + i, dtype=np.intp))
            pc_.append(partners.astype(np.intp))
        return self._append_bundles(np.concatenate(pd_), np.concatenate(pc_), rng, deals_from=first)

    def add_courses(self, n: int, rng: np.random.Generator) -> CatalogAddition:
        """Add ``n`` courses and their bundles (pairing as in :meth:`add_deals`, with deals)."""
        n = _check_int("n", n, 1, error=ValidationError)
        new = draw_courses(n, rng, cover_topics=False)
        first = len(self._courses)
        self._courses = self._courses.concat(new)
        n_deals = len(self._deals)
        per = self._pairs_per("course")
        pd_, pc_ = [], []
        for i in range(n):
            partners = (
                np.arange(n_deals) if per is None else np.sort(rng.choice(n_deals, per, False))
            )
            pd_.append(partners.astype(np.intp))
            pc_.append(np.full(partners.shape[0], first + i, dtype=np.intp))
        return self._append_bundles(
            np.concatenate(pd_), np.concatenate(pc_), rng, courses_from=first
        )

    def _pairs_per(self, kind: Literal["deal", "course"]) -> int | None:
        cfg = self.config
        if isinstance(cfg.bundles, str):
            return None
        if kind == "deal":
            return max(1, min(len(self._courses), round(cfg.bundles / cfg.n_deals)))
        return max(1, min(len(self._deals), round(cfg.bundles / cfg.n_courses)))

    def _append_bundles(
        self,
        pair_deal: IntArray,
        pair_course: IntArray,
        rng: np.random.Generator,
        *,
        deals_from: int | None = None,
        courses_from: int | None = None,
    ) -> CatalogAddition:
        first = self.n_bundles
        hidden = rng.standard_normal((pair_deal.shape[0], self.config.noise_rank))
        hidden /= math.sqrt(self.config.noise_rank)
        self._pair_deal = np.concatenate([self._pair_deal, pair_deal])
        self._pair_course = np.concatenate([self._pair_course, pair_course])
        self._bundle_hidden = np.concatenate([self._bundle_hidden, hidden])
        self._rebuild_catalog()
        index = np.arange(first, self.n_bundles, dtype=np.intp)
        return CatalogAddition(
            deals=self.deals.iloc[deals_from:] if deals_from is not None else self.deals.iloc[:0],
            courses=(
                self.courses.iloc[courses_from:]
                if courses_from is not None
                else self.courses.iloc[:0]
            ),
            bundles=self.bundles.iloc[first:],
            bundle_index=index,
        )

    # -- diagnostics -------------------------------------------------------------------------------
    def diagnostics(
        self,
        *,
        t: float | None = None,
        max_users: int = 2000,
        reward_weights: RewardWeightsLike | Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Base rates and the size of the contextual advantage over the first ``max_users`` users.

        Keys: ``uniform_ctr`` (mean click probability of a uniformly random eligible bundle),
        ``orders_per_click`` (under that same choice), ``best_ctr`` (mean over users of their best
        eligible click probability), ``oracle_reward`` (mean expected reward of each user's best
        bundle), ``context_free_reward`` (mean expected reward of the best bundle of the user's
        city, chosen on the city's average), ``contextual_lift`` (their ratio), ``users`` (users
        counted).
        """
        t = float(self.config.start_time if t is None else t)
        n = min(self.n_users, _check_int("max_users", max_users, 1, error=ValidationError))
        click, order, value_w = _weights_of(reward_weights)
        users = np.arange(n)
        mask = self._eligible_matrix(users, t)
        keep = mask.any(axis=1)
        users, mask = users[keep], mask[keep]
        W = self._W0[users]
        if self._W1 is not None:
            W = W + self.drift_weight(t) * (self._W1[users] - W)
        # (users, 2, m) @ (m, bundles): click and order logits of every pair in one product.
        p = _sigmoid_inplace(np.matmul(W.transpose(0, 2, 1), self._phi.T))
        pc, po = p[:, 0, :], p[:, 1, :]
        v = self._users.basket[users][:, None] * self._value[None, :]
        reward = pc * (click + po * (order + value_w * v))
        counts = mask.sum(axis=1)
        uniform_ctr = (np.where(mask, pc, 0.0).sum(axis=1) / counts).mean()
        uniform_orders = (np.where(mask, pc * po, 0.0).sum(axis=1) / counts).mean()
        masked_reward = np.where(mask, reward, -np.inf)
        oracle = masked_reward.max(axis=1)
        context_free = np.empty(users.shape[0])
        cities = self._users.city[users]
        for c in np.unique(cities):
            rows = np.flatnonzero(cities == c)
            best = int(np.argmax(masked_reward[rows].mean(axis=0)))
            context_free[rows] = reward[rows, best]
        return {
            "users": float(users.shape[0]),
            "uniform_ctr": float(uniform_ctr),
            "orders_per_click": float(uniform_orders / uniform_ctr),
            "best_ctr": float(np.where(mask, pc, -np.inf).max(axis=1).mean()),
            "oracle_reward": float(oracle.mean()),
            "context_free_reward": float(context_free.mean()),
            "contextual_lift": float(oracle.mean() / context_free.mean()),
        }


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in table.to_dict("records")]


def _weights_of(
    reward_weights: RewardWeightsLike | Mapping[str, float] | None,
) -> tuple[float, float, float]:
    if reward_weights is None:
        return 1.0, 0.0, 0.0
    if isinstance(reward_weights, Mapping):
        _unknown_key(
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
        _check_finite(f"reward_weights.{name}", v, ValidationError)
        for name, v in zip(("click", "order", "value_weight"), values, strict=True)
    )
    return click, order, value_w


def _initial_pairs(config: WorldConfig, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    """Deal and course row of every initial bundle, sorted by (deal, course)."""
    nd, nc = config.n_deals, config.n_courses
    if config.bundles == "all":
        d, c = np.divmod(np.arange(nd * nc), nc)
        return d.astype(np.intp), c.astype(np.intp)
    k = config.bundles
    chosen = np.zeros(nd * nc, dtype=bool)
    if k >= nd:
        # One course for every deal first, so no deal is unreachable.
        chosen[np.arange(nd) * nc + rng.integers(nc, size=nd)] = True
    rest = np.flatnonzero(~chosen)
    chosen[rng.choice(rest, size=k - int(chosen.sum()), replace=False)] = True
    d, c = np.divmod(np.flatnonzero(chosen), nc)
    return d.astype(np.intp), c.astype(np.intp)
