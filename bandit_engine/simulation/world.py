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

Response model and drift
------------------------
What a user does with a bundle (click, order, order value) and how tastes drift are documented
with the code that computes them, in :mod:`bandit_engine.simulation.response`. The world draws
everything once at generation, so the true rates of any (user, bundle, time) are known exactly.

Eligibility and unknown cities
------------------------------
:meth:`World.eligible` uses the user's *true* city and the deals' validity windows
(``valid_from <= t < valid_to``). The engine knows a city only from the group-buying table; its
default for an unknown city is to offer every city. That is harmless to the simulation: every bundle
has a true response, and deals outside the user's true city are penalised by
``foreign_city_penalty`` in both logits, so offering them is a real, learnable mistake.
:meth:`World.true_rates` accepts any bundle indices, so the runner should pass the engine's own
candidates (:meth:`World.bundle_indices` maps their ids).

Arrivals
--------
:meth:`World.arrivals` draws arrival times and users (:mod:`bandit_engine.simulation.arrivals`):
a daily-pattern Poisson process, users in proportion to a hidden visit weight.

Everything is deterministic: the same config and seed give identical tables and rates.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import ConfigError, NotFoundError, ValidationError
from ..policies.base import make_rng
from .arrivals import arrival_times, visitors
from .grid_response import GridTruth, grid_best, pair_rows, side_designs
from .population import (
    AGE_BANDS,
    CITIES,
    MEMBERSHIPS,
    SEGMENTS,
    CourseTruth,
    DealTruth,
    UserTruth,
    draw_courses,
    draw_deals,
    draw_users,
    groupbuy_table,
    initial_pairs,
    knowledge_table,
)
from .response import _SYNERGY, ResponseModel, bundle_design
from .world_config import (
    RewardWeightsLike,
    WorldConfig,
    check_finite,
    check_int,
    parse_reward_weights,
)

__all__ = ["CatalogAddition", "World"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_DAY = 86400.0
# Users used to calibrate the intercepts: enough for the mean CTR to be within ~1% of its target.
_CALIBRATION_USERS = 4000
# A grid world calibrates on sampled pairs: this many users, this many pairs each (the mean of
# 128,000 sampled click probabilities is within ~1% of the uniform choice's).
_GRID_CALIBRATION_USERS = 2000
_GRID_PAIRS_PER_USER = 64


@dataclass(frozen=True, eq=False)
class CatalogAddition:
    """What :meth:`World.add_deals` / :meth:`World.add_courses` added (new rows only)."""

    deals: pd.DataFrame
    courses: pd.DataFrame
    bundles: pd.DataFrame
    bundle_index: IntArray


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
        grid_hidden: NDArray[np.float32] | None = None,
        calibration_rng: np.random.Generator | None = None,
    ) -> None:
        self.config = config
        self.seed = seed
        self.knowledge = knowledge
        self.groupbuy = groupbuy
        self._users = users
        self._deals = deals
        self._courses = courses
        self._pair_deal = pair_deal
        self._pair_course = pair_course
        self._bundle_hidden = bundle_hidden
        self._k_rows = knowledge_rows
        self._g_rows = groupbuy_rows
        self._records: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self._grid_hidden = grid_hidden
        self._grid: GridTruth | None = None
        # Tastes first (the only draws here), then the catalog, then the intercepts calibrated on it.
        self._response = ResponseModel(config, users, drift_rng)
        self._rebuild_catalog()
        if self._grid is not None:
            n_cal = min(len(users), calibration_users, _GRID_CALIBRATION_USERS)
            rng = calibration_rng if calibration_rng is not None else make_rng(0)
            b0, c0 = self._response.calibrate_pairs(
                *self._grid_calibration_design(n_cal, config.start_time, rng)
            )
        else:
            n_cal = min(len(users), calibration_users)
            b0, c0 = self._response.calibrate(
                self._eligible_matrix(np.arange(n_cal), config.start_time)
            )
        self.click_intercept = b0
        self.order_intercept = c0

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
        grid_hidden: NDArray[np.float32] | None = None
        calibration_rng: np.random.Generator | None = None
        if config.bundles == "grid":
            # every pair's hidden factors, never a design row per pair (see grid_response.py)
            pair_deal = pair_course = np.empty(0, dtype=np.intp)
            hidden = np.empty((0, config.noise_rank))
            grid_hidden = r_bundles.standard_normal(
                (config.n_deals, config.n_courses, config.noise_rank), dtype=np.float32
            )
            grid_hidden /= np.float32(math.sqrt(config.noise_rank))
            # an eighth stream (spawning more children leaves the first seven unchanged)
            calibration_rng = base.spawn(1)[0]
        else:
            pair_deal, pair_course = initial_pairs(
                config.n_deals, config.n_courses, config.bundles, r_bundles
            )
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
            grid_hidden=grid_hidden,
            calibration_rng=calibration_rng,
        )

    def _rebuild_catalog(self) -> None:
        """Recompute bundle arrays and tables after the catalog changed."""
        if self._grid_hidden is not None:
            self._rebuild_grid(self._grid_hidden)
            return
        self._response.set_catalog(
            self._deals, self._courses, self._pair_deal, self._pair_course, self._bundle_hidden
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
        self._bundles = pd.DataFrame(
            {"deal_id": list(deal_ids), "course_id": list(course_ids), "bundle_id": bundle_ids}
        )
        self._bundle_pos = {b: i for i, b in enumerate(bundle_ids)}

    def _rebuild_grid(self, hidden: NDArray[np.float32]) -> None:
        """The pair-independent parts of a grid world (no row per bundle)."""
        layout = self._response.layout
        deals, courses = self._deals, self._courses
        nd, nc, r = len(deals), len(courses), self.config.noise_rank
        rows_d, rows_c = np.arange(nd, dtype=np.intp), np.arange(nc, dtype=np.intp)
        full_d = bundle_design(
            layout, deals, courses, rows_d, np.zeros(nd, dtype=np.intp), np.zeros((nd, r))
        )
        full_c = bundle_design(
            layout, deals, courses, np.zeros(nc, dtype=np.intp), rows_c, np.zeros((nc, r))
        )
        D, C = side_designs(layout, full_d, full_c, deals.quality, courses.quality)
        self._grid = GridTruth(
            deal_design=D,
            course_design=C,
            synergy=_SYNERGY,
            deal_cuisine=deals.cuisine,
            course_topic=courses.topic,
            deal_value=deals.price * (1.0 - deals.discount),
            course_value=self.config.course_value_share * courses.price,
            hidden=hidden,
            hidden_norm=np.sqrt(np.square(hidden, dtype=np.float64).sum(axis=2)).max(axis=1),
        )
        self.deals = deals.table(0)
        self.courses = courses.table(0)
        self._deal_pos = {d: i for i, d in enumerate(self.deals["deal_id"])}
        self._course_pos = {c: i for i, c in enumerate(self.courses["course_id"])}

    def _grid_calibration_design(
        self, n_cal: int, t: float, rng: np.random.Generator
    ) -> tuple[IntArray, FloatArray]:
        """User rows and design rows of ``_GRID_PAIRS_PER_USER`` pairs drawn uniformly from each
        of the first ``n_cal`` users' eligible pairs, shape ``(users, per_user, m)``."""
        assert self._grid is not None
        per = _GRID_PAIRS_PER_USER
        deals = self._deals
        valid = (deals.valid_from <= t) & (t < deals.valid_to)
        by_city = [np.flatnonzero(valid & (deals.city == c)) for c in range(self.config.n_cities)]
        d_rows = np.empty((n_cal, per), dtype=np.intp)
        for u in range(n_cal):
            pool = by_city[int(self._users.city[u])]
            # a city without valid deals leaves its users out (their weight goes to the others)
            d_rows[u] = rng.choice(pool, size=per) if pool.shape[0] else -1
        keep = d_rows[:, 0] >= 0
        d_rows = d_rows[keep]
        c_rows = rng.integers(0, len(self._courses), size=d_rows.shape)
        phi, _ = pair_rows(
            self._response.layout,
            self._grid,
            deals,
            self._courses,
            d_rows.ravel(),
            c_rows.ravel(),
            self.config.course_value_share,
        )
        return np.flatnonzero(keep).astype(np.intp), phi.reshape(d_rows.shape[0], per, -1)

    # -- sizes and ids --------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def is_grid(self) -> bool:
        """Whether the world pairs every deal with every course without listing the bundles
        (``bundles = "grid"``): bundle ``d * n_courses + c`` is deal row ``d`` with course ``c``."""
        return self._grid is not None

    @property
    def n_bundles(self) -> int:
        if self._grid is not None:
            return len(self._deals) * len(self._courses)
        return int(self._pair_deal.shape[0])

    @property
    def bundles(self) -> pd.DataFrame:
        """The bundle table (``deal_id``, ``course_id``, ``bundle_id``), row ``i`` being bundle index
        ``i``; a grid world has none (its engines get an unlisted catalog)."""
        if self._grid is not None:
            raise ConfigError.for_field(
                "bundles", "grid", "lists no bundle table (every deal x course pair is a bundle)"
            )
        return self._bundles

    def _check_not_grid(self, what: str) -> None:
        if self._grid is not None:
            raise ConfigError.for_field(
                "bundles", "grid", f"is not supported by {what} (use 'all' or a number)"
            )

    def user_id(self, user_index: int) -> str:
        """The id of a user (``"U000042"``), also for users without any profile row."""
        return f"U{self._check_user(user_index):06d}"

    def segment(self, user_index: int) -> str:
        """``"both"``, ``"knowledge"``, ``"groupbuy"`` or ``"new"``."""
        return SEGMENTS[int(self._users.segment[self._check_user(user_index)])]

    def bundle_indices(self, bundle_ids: Sequence[str]) -> IntArray:
        """Rows of ``bundles`` for the given ids (for example the engine's candidates)."""
        out = np.empty(len(bundle_ids), dtype=np.intp)
        if self._grid is not None:
            nc = len(self._courses)
            for i, b in enumerate(bundle_ids):
                deal, _, course = str(b).partition("+")
                d, c = self._deal_pos.get(deal), self._course_pos.get(course)
                if d is None or c is None:
                    raise NotFoundError.for_field("bundle_id", b, "is not a bundle of this world")
                out[i] = d * nc + c
            return out
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
        return self._response.drift_weight(t)

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
            if self._grid is not None:
                d, c = np.divmod(np.asarray(bundle_index, dtype=np.intp), len(self._courses))
                if d.size and (d.min() < 0 or d.max() >= len(self._deals)):
                    raise IndexError
                phi, value = pair_rows(
                    self._response.layout,
                    self._grid,
                    self._deals,
                    self._courses,
                    d,
                    c,
                    self.config.course_value_share,
                )
                return self._response.rates_of(u, phi, value, t, self._users.basket[u])
            return self._response.rates(u, bundle_index, t, self._users.basket[u])
        except (IndexError, TypeError):
            raise ValidationError.for_field(
                "bundle_index",
                bundle_index,
                f"must be an integer array of bundle rows in [0, {self.n_bundles - 1}]",
            ) from None

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
        click, order, value_w = parse_reward_weights(reward_weights)
        pc, po, v = self.true_rates(user_index, bundle_index, t)
        out: FloatArray = pc * (click + po * (order + value_w * v))
        return out

    def best_pair(
        self,
        user_index: int,
        deal_rows: IntArray,
        course_rows: IntArray,
        t: float,
        reward_weights: RewardWeightsLike | Mapping[str, float] | None = None,
    ) -> tuple[float, int]:
        """The best expected reward over every pair of ``deal_rows x course_rows`` (rows of
        ``deals`` and ``courses``) and its bundle index, exactly, without scoring every pair when
        the bound allows (:func:`~.grid_response.grid_best`). A grid world's oracle."""
        u = self._check_user(user_index)
        if self._grid is None:
            self._check_grid_only("best_pair")
        assert self._grid is not None
        value, d, c = grid_best(
            self._response.layout,
            self._grid,
            self._response.user_matrix(u, t),
            float(self._users.basket[u]),
            np.asarray(deal_rows, dtype=np.intp),
            np.asarray(course_rows, dtype=np.intp),
            parse_reward_weights(reward_weights),
        )
        return value, d * len(self._courses) + c

    def _check_grid_only(self, what: str) -> None:
        raise ConfigError.for_field("bundles", self.config.bundles, f"must be 'grid' for {what}")

    def deal_rows(self, deal_ids: Sequence[str]) -> IntArray:
        """Rows of ``deals`` for the given deal ids (a grid world's offered deals)."""
        return _rows_of(deal_ids, self.deals["deal_id"], "deal_id", "deal")

    def course_rows(self, course_ids: Sequence[str]) -> IntArray:
        """Rows of ``courses`` for the given course ids."""
        return _rows_of(course_ids, self.courses["course_id"], "course_id", "course")

    # -- eligibility -------------------------------------------------------------------------------
    def eligible(self, user_index: int, t: float) -> IntArray:
        """Bundle rows eligible for the user at ``t``: deals of the user's true city, valid then."""
        u = self._check_user(user_index)
        if self._grid is not None:
            deals = self._deals
            d = np.flatnonzero(
                (deals.city == self._users.city[u]) & (deals.valid_from <= t) & (t < deals.valid_to)
            )
            nc = len(self._courses)
            rows: IntArray = (d[:, None] * nc + np.arange(nc)[None, :]).ravel().astype(np.intp)
            return rows
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

        Times follow the daily-pattern Poisson process of :func:`~.arrivals.arrival_times` (sorted, strictly
        after ``start``); users are drawn with replacement in proportion to their visit weight, from
        ``users`` if given (for example a wave returned by :meth:`add_new_users`), else from all.
        """
        n = check_int("n", n, 0, error=ValidationError)
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
        times = arrival_times(cfg, n, rng, start=t)
        return times, visitors(pool, self._users.visit_weight[pool], n, rng)

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
        n = check_int("n", n, 1, error=ValidationError)
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
        self._response.add_users(new, rng)
        first = self.n_users
        self._users = self._users.concat(new)
        return np.arange(first, first + n, dtype=np.intp)

    def add_deals(
        self, n: int, rng: np.random.Generator, *, t: float | None = None
    ) -> CatalogAddition:
        """Add ``n`` deals valid from ``t`` (default ``start_time``) and their bundles.

        With ``bundles="all"`` each new deal pairs with every course; otherwise with as many random
        courses as the average deal had at the start.
        """
        n = check_int("n", n, 1, error=ValidationError)
        self._check_not_grid("add_deals")
        start = float(
            self.config.start_time if t is None else check_finite("t", t, ValidationError)
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
        n = check_int("n", n, 1, error=ValidationError)
        self._check_not_grid("add_courses")
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
            bundles=self._bundles.iloc[first:],
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
        self._check_not_grid("diagnostics")
        t = float(self.config.start_time if t is None else t)
        n = min(self.n_users, check_int("max_users", max_users, 1, error=ValidationError))
        click, order, value_w = parse_reward_weights(reward_weights)
        users = np.arange(n)
        mask = self._eligible_matrix(users, t)
        keep = mask.any(axis=1)
        users, mask = users[keep], mask[keep]
        pc, po = self._response.all_rates(users, t)
        v = self._users.basket[users][:, None] * self._response.value[None, :]
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


def _rows_of(ids: Sequence[str], table_ids: pd.Series, field: str, what: str) -> IntArray:
    """Positions of ``ids`` in ``table_ids`` (a table's id column); a clear error for an unknown one."""
    pos = pd.Index(table_ids)
    out: IntArray = pos.get_indexer(list(ids)).astype(np.intp)
    if out.size and out.min() < 0:
        bad = list(ids)[int(np.argmin(out))]
        raise NotFoundError.for_field(field, bad, f"is not a {what} of this world")
    return out


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in table.to_dict("records")]
