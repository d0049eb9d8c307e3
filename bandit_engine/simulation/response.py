"""The response model: true click and order probabilities of each (user, bundle) as a bilinear form.

Every bundle ``b`` gets a design vector ``phi_b`` and every user ``u`` a coefficient matrix ``W_u``
of shape ``(m, 2)`` (column 0: click, column 1: order given click), so that::

    logit p_click(u, b)             = phi_b . W_u[:, 0]
    logit p_order_given_click(u, b) = phi_b . W_u[:, 1]

Written this way a call costs one gather and one small matrix product, which keeps
:meth:`World.true_rates` fast. The blocks of ``phi_b`` are listed in :class:`Layout`;
:class:`ResponseModel` holds the matrices of one world (before and after drift).

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from .population import CUISINES, FORMATS, TOPICS, CourseTruth, DealTruth, UserTruth
from .world_config import WorldConfig

__all__ = [
    "Layout",
    "ResponseModel",
    "bundle_design",
    "bundle_value",
    "calibrate_from_logits",
    "calibrate_intercepts",
    "drift_users",
    "user_weights",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

_LOG_REF_PRICE = float(np.log(100.0))
_REF_RATING = 4.3
_DAY = 86400.0
# Bundle-level complementarity of a course topic and a deal cuisine (rows: TOPICS, cols: CUISINES):
# a wine course goes with a western dinner, a fitness course with a vegetarian one. Context-free.
_SYNERGY = np.zeros((len(TOPICS), len(CUISINES)))
_SYNERGY[TOPICS.index("cooking")] = [0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.15]
_SYNERGY[TOPICS.index("wine")] = [0.0, 0.1, 0.2, 0.25, 0.0, 0.0, 0.0, 0.0]
_SYNERGY[TOPICS.index("fitness")] = [0.0, 0.0, 0.0, 0.0, -0.05, 0.3, -0.15, -0.15]
_SYNERGY[TOPICS.index("language")] = [0.0, 0.0, 0.15, 0.1, 0.0, 0.0, 0.0, 0.0]
_SYNERGY[TOPICS.index("parenting")] = [0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.05, 0.15]
_SYNERGY[TOPICS.index("design")] = [0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.0, 0.1]
_SYNERGY[TOPICS.index("history")] = [0.0, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@dataclass(frozen=True)
class Layout:
    """Positions of the blocks of a bundle design vector ``phi_b``.

    ``const`` (1), ``cuisine`` (one-hot), ``topic`` (one-hot), ``format`` (one-hot), ``lp`` (log
    deal price - log 100), ``lp2`` (its square), ``discount``, ``clp`` (log course price - log 100),
    ``rating`` (rating - 4.3), ``quality`` (hidden bundle quality, coefficient 1 for everyone),
    ``city`` (one-hot of the deal's city), ``hidden`` (``noise_rank`` unobservable bundle factors).
    """

    n_cities: int
    noise_rank: int

    const: ClassVar[int] = 0
    cuisine: ClassVar[slice] = slice(1, 1 + len(CUISINES))
    topic: ClassVar[slice] = slice(1 + len(CUISINES), 1 + len(CUISINES) + len(TOPICS))
    format: ClassVar[slice] = slice(
        1 + len(CUISINES) + len(TOPICS), 1 + len(CUISINES) + len(TOPICS) + len(FORMATS)
    )

    @property
    def lp(self) -> int:
        return int(self.format.stop)

    @property
    def lp2(self) -> int:
        return self.lp + 1

    @property
    def discount(self) -> int:
        return self.lp + 2

    @property
    def clp(self) -> int:
        return self.lp + 3

    @property
    def rating(self) -> int:
        return self.lp + 4

    @property
    def quality(self) -> int:
        return self.lp + 5

    @property
    def city(self) -> slice:
        return slice(self.lp + 6, self.lp + 6 + self.n_cities)

    @property
    def hidden(self) -> slice:
        return slice(self.city.stop, self.city.stop + self.noise_rank)

    @property
    def size(self) -> int:
        return int(self.hidden.stop)


def bundle_design(
    layout: Layout,
    deals: DealTruth,
    courses: CourseTruth,
    deal_idx: IntArray,
    course_idx: IntArray,
    hidden: FloatArray,
) -> FloatArray:
    """Design vectors ``phi`` (one row per bundle) of the bundles ``(deal_idx[i], course_idx[i])``.

    ``hidden`` holds the bundles' unobservable factors, shape ``(len(deal_idx), noise_rank)``.
    """
    k = deal_idx.shape[0]
    phi = np.zeros((k, layout.size))
    rows = np.arange(k)
    cuisine = deals.cuisine[deal_idx]
    topic = courses.topic[course_idx]
    phi[:, layout.const] = 1.0
    phi[rows, layout.cuisine.start + cuisine] = 1.0
    phi[rows, layout.topic.start + topic] = 1.0
    phi[rows, layout.format.start + courses.format[course_idx]] = 1.0
    lp = np.log(deals.price[deal_idx]) - _LOG_REF_PRICE
    phi[:, layout.lp] = lp
    phi[:, layout.lp2] = lp**2
    phi[:, layout.discount] = deals.discount[deal_idx]
    phi[:, layout.clp] = np.log(courses.price[course_idx]) - _LOG_REF_PRICE
    phi[:, layout.rating] = courses.rating[course_idx] - _REF_RATING
    phi[:, layout.quality] = (
        0.1 * deals.quality[deal_idx]
        + 0.08 * courses.quality[course_idx]
        + _SYNERGY[topic, cuisine]
    )
    phi[rows, layout.city.start + deals.city[deal_idx]] = 1.0
    phi[:, layout.hidden] = hidden
    return phi


def bundle_value(
    deals: DealTruth,
    courses: CourseTruth,
    deal_idx: IntArray,
    course_idx: IntArray,
    course_value_share: float,
) -> FloatArray:
    """Order value of one basket (before the user's multiplier): net deal price plus the expected
    course revenue, ``price * (1 - discount) + course_value_share * course_price``."""
    out: FloatArray = (
        deals.price[deal_idx] * (1.0 - deals.discount[deal_idx])
        + course_value_share * courses.price[course_idx]
    )
    return out


def user_weights(
    layout: Layout,
    users: UserTruth,
    *,
    context_strength: float,
    noise_scale: float,
    foreign_city_penalty: float,
) -> FloatArray:
    """Coefficient matrices ``W`` of shape ``(n_users, m, 2)`` (without the calibrated intercepts).

    ``context_strength`` scales every user-specific interaction (tastes, price and discount
    responses, format, ticket fit); 0 leaves a world where only bundle quality, the common effects
    and the hidden factors differ between bundles.
    """
    n = len(users)
    cs = context_strength
    W = np.zeros((n, layout.size, 2))
    ps = users.price_sensitivity
    t = users.log_ticket - _LOG_REF_PRICE
    topic = users.topic_taste
    cook_wine = 0.5 * (topic[:, TOPICS.index("cooking")] + topic[:, TOPICS.index("wine")])
    finance = topic[:, TOPICS.index("finance")]
    fitness = topic[:, TOPICS.index("fitness")]
    memb = users.membership
    premium = (memb == 2).astype(np.float64)

    # --- click ---------------------------------------------------------------------------------
    g = 0.25  # curvature of the ticket fit: -g * (lp - t)^2 = -g lp^2 + 2 g t lp - g t^2
    cuisine = users.cuisine_taste.copy()
    # Cross-domain: fitness learners lean vegetarian, cooking/wine learners to japanese/western.
    cuisine[:, CUISINES.index("vegetarian")] += 0.4 * fitness
    cuisine[:, CUISINES.index("japanese")] += 0.2 * cook_wine
    cuisine[:, CUISINES.index("western")] += 0.2 * cook_wine
    c = W[:, :, 0]
    c[:, layout.const] = 0.3 * users.engagement + np.array([0.0, 0.1, 0.2])[memb] - cs * g * t**2
    c[:, layout.cuisine] = cs * (0.25 * cuisine + 0.5 * users.seen_cuisines)
    c[:, layout.topic] = cs * (0.25 * topic + 0.5 * users.seen_topics)
    c[:, layout.format] = cs * 0.2 * users.format_taste
    c[:, layout.lp] = cs * (2 * g * t - 0.35 * ps + 0.15 * cook_wine)
    c[:, layout.lp2] = -cs * g
    # Centred on the mean sensitivity (about 0.45) so the interaction adds contrast between users
    # without inflating the common discount effect.
    c[:, layout.discount] = 1.0 + cs * (2.5 * (ps - 0.45) + 0.3 * finance)
    c[:, layout.clp] = -cs * 0.3 * ps
    c[:, layout.rating] = 0.3 + cs * 0.2 * premium
    c[:, layout.quality] = 1.0
    c[:, layout.city] = -foreign_city_penalty
    c[np.arange(n), layout.city.start + users.city] = 0.0
    c[:, layout.hidden] = noise_scale * users.hidden

    # --- order given click -----------------------------------------------------------------------
    go = 0.6  # orders are pickier about the ticket than clicks
    o = W[:, :, 1]
    o[:, layout.const] = (
        0.25 * users.engagement + np.array([0.0, 0.05, 0.15])[memb] - cs * go * t**2
    )
    o[:, layout.cuisine] = cs * (0.1 * cuisine + 0.2 * users.seen_cuisines)
    o[:, layout.lp] = -0.2 + cs * 2 * go * t
    o[:, layout.lp2] = -cs * go
    o[:, layout.discount] = 0.5 + cs * 2.0 * ps
    o[:, layout.clp] = -0.15
    o[:, layout.quality] = 0.5
    o[:, layout.city] = -foreign_city_penalty
    o[np.arange(n), layout.city.start + users.city] = 0.0
    o[:, layout.hidden] = 0.5 * noise_scale * users.hidden
    return W


def drift_users(
    users: UserTruth,
    rng: np.random.Generator,
    *,
    strength: float,
    cuisine_trend: FloatArray,
    topic_trend: FloatArray,
) -> UserTruth:
    """The users' tastes after drift.

    Each taste block becomes ``sqrt(1 - s^2) * old + s * (fresh + trend)`` with ``s = strength``,
    ``fresh`` an independent draw of the block's typical spread and ``trend`` a vector shared by all
    users (cuisines and topics only), so both who likes what and what is popular change.
    """
    n = len(users)
    a = float(np.sqrt(1.0 - strength**2))
    s = strength
    return replace(
        users,
        cuisine_taste=a * users.cuisine_taste
        + s * (0.9 * rng.standard_normal((n, len(CUISINES))) + cuisine_trend),
        topic_taste=a * users.topic_taste
        + s * (0.9 * rng.standard_normal((n, len(TOPICS))) + topic_trend),
        format_taste=a * users.format_taste + s * 0.3 * rng.standard_normal((n, len(FORMATS))),
        hidden=a * users.hidden + s * rng.standard_normal(users.hidden.shape),
        seen_cuisines=a * users.seen_cuisines,
        seen_topics=a * users.seen_topics,
    )


def calibrate_intercepts(
    W: FloatArray,
    phi: FloatArray,
    eligible: BoolArray,
    *,
    base_ctr: float,
    order_rate: float,
) -> tuple[float, float]:
    """Intercepts ``(b0, c0)`` such that, under a uniformly random choice among each user's eligible
    bundles, the mean click probability is ``base_ctr`` and orders per click are ``order_rate``.

    ``eligible[u, b]`` says whether bundle ``b`` is eligible for user ``u`` (rows of ``W``); users
    with no eligible bundle are ignored. Both targets are increasing in their intercept; a
    safeguarded Newton search solves them to a relative 1e-10.
    """
    keep = eligible.any(axis=1)
    W, eligible = W[keep], eligible[keep]
    rows = np.nonzero(eligible)[0]
    # A uniform choice weighs each user's eligible bundles by 1 / count, each user equally.
    weight = 1.0 / eligible.sum(axis=1)[rows] / W.shape[0]
    logit_c = (W[:, :, 0] @ phi.T)[eligible]
    logit_o = (W[:, :, 1] @ phi.T)[eligible]
    return calibrate_from_logits(logit_c, logit_o, weight, base_ctr=base_ctr, order_rate=order_rate)


def calibrate_from_logits(
    logit_c: FloatArray,
    logit_o: FloatArray,
    weight: FloatArray,
    *,
    base_ctr: float,
    order_rate: float,
) -> tuple[float, float]:
    """Intercepts ``(b0, c0)`` from (user, bundle) pairs' logits without intercepts and their
    weights in the uniform choice (summing to 1): the core of :func:`calibrate_intercepts`, also
    used with sampled pairs by grid worlds."""

    # Weighted sums as multiply-and-sum, not BLAS dot: a threaded BLAS on a busy machine made
    # many small dot products take seconds.
    def clicks(b: float) -> tuple[float, float]:
        p = _sigmoid(b + logit_c)
        return float((weight * p).sum()), float((weight * p * (1.0 - p)).sum())

    b0 = _solve_increasing(clicks, base_ctr)
    p_click = weight * _sigmoid(b0 + logit_c)
    total = float(p_click.sum())

    def orders(c: float) -> tuple[float, float]:
        p = _sigmoid(c + logit_o)
        return float((p_click * p).sum()) / total, float((p_click * p * (1.0 - p)).sum()) / total

    c0 = _solve_increasing(orders, order_rate)
    return b0, c0


def _solve_increasing(f: Callable[[float], tuple[float, float]], target: float) -> float:
    """Root of ``f(x) = target`` for an increasing ``f`` returning ``(value, derivative)``:
    Newton steps, falling back to bisection when a step leaves the bracket [-30, 30]."""
    lo, hi = -30.0, 30.0
    x = 0.0
    for _ in range(100):
        value, slope = f(x)
        if abs(value - target) <= 1e-10 * target or hi - lo < 1e-12:
            break
        if value < target:
            lo = x
        else:
            hi = x
        step = x - (value - target) / slope if slope > 0 else math.inf
        x = step if lo < step < hi else 0.5 * (lo + hi)
    return x


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-z))
    return out


def _sigmoid_inplace(z: FloatArray) -> FloatArray:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


class ResponseModel:
    """The true responses of one world: every user's ``W_u`` before and after drift, every bundle's
    ``phi_b`` and order value, the calibrated intercepts.

    Internal to :class:`~bandit_engine.simulation.world.World`, which owns the users and the
    catalog, checks indices, and calls :meth:`set_catalog` whenever the catalog changes and
    :meth:`calibrate` once, after the first catalog.

    Parameters
    ----------
    config
        The world's settings (layout, effect sizes, drift, calibration targets).
    users
        The users' hidden truth.
    drift_rng
        Draws the shared drift trends, then the drifted tastes (nothing without drift).
    """

    def __init__(
        self, config: WorldConfig, users: UserTruth, drift_rng: np.random.Generator
    ) -> None:
        self.config = config
        self.layout = Layout(n_cities=config.n_cities, noise_rank=config.noise_rank)
        self._cuisine_trend = 0.6 * drift_rng.standard_normal(len(CUISINES))
        self._topic_trend = 0.6 * drift_rng.standard_normal(len(TOPICS))
        # Without intercepts until calibrate() adds them.
        self._W0 = self._weights(users)
        self._W1 = self._drifted_weights(users, drift_rng)
        self.intercepts = (0.0, 0.0)
        self._drift_intercepts = (0.0, 0.0)
        self.phi: FloatArray = np.empty((0, 0))
        self.value: FloatArray = np.empty(0)
        drift = config.drift
        self._drift_from = config.start_time + drift.at_days * _DAY
        self._drift_span = drift.duration_days * _DAY if drift.kind == "gradual" else 0.0

    def _weights(self, users: UserTruth) -> FloatArray:
        return user_weights(
            self.layout,
            users,
            context_strength=self.config.context_strength,
            noise_scale=self.config.noise_scale,
            foreign_city_penalty=self.config.foreign_city_penalty,
        )

    def _add_intercepts(self, W: FloatArray, intercepts: tuple[float, float]) -> FloatArray:
        W[:, self.layout.const, 0] += intercepts[0]
        W[:, self.layout.const, 1] += intercepts[1]
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

    def set_catalog(
        self,
        deals: DealTruth,
        courses: CourseTruth,
        pair_deal: IntArray,
        pair_course: IntArray,
        hidden: FloatArray,
    ) -> None:
        """Recompute the bundle design and order values after the catalog changed."""
        self.phi = np.ascontiguousarray(
            bundle_design(self.layout, deals, courses, pair_deal, pair_course, hidden)
        )
        self.value = bundle_value(
            deals, courses, pair_deal, pair_course, self.config.course_value_share
        )

    def calibrate(self, eligible: BoolArray) -> tuple[float, float]:
        """Calibrate and add the intercepts ``(b0, c0)`` on the first ``eligible.shape[0]`` users
        (``eligible[u, b]``: bundle ``b`` eligible for user ``u`` at the start); returns them."""
        n_cal = eligible.shape[0]
        config = self.config

        def calibrate(W: FloatArray) -> tuple[float, float]:
            return calibrate_intercepts(
                W[:n_cal],
                self.phi,
                eligible,
                base_ctr=config.base_ctr,
                order_rate=config.order_rate,
            )

        return self._set_intercepts(calibrate)

    def _set_intercepts(
        self, calibrate: Callable[[FloatArray], tuple[float, float]]
    ) -> tuple[float, float]:
        b0, c0 = calibrate(self._W0)
        self.intercepts = (b0, c0)
        # Drifted tastes get their own intercepts (calibrated on the same catalog), so drift
        # changes what users like, not how much they click overall.
        self._drift_intercepts = calibrate(self._W1) if self._W1 is not None else (b0, c0)
        self._W0 = self._add_intercepts(self._W0, (b0, c0))
        if self._W1 is not None:
            self._W1 = self._add_intercepts(self._W1, self._drift_intercepts)
        return b0, c0

    def calibrate_pairs(self, users: IntArray, phi: FloatArray) -> tuple[float, float]:
        """:meth:`calibrate` from sampled eligible pairs: ``phi[i, j]`` is the design row of a pair
        drawn uniformly from the eligible set of user row ``users[i]`` (shape ``(len(users),
        per_user, m)``), for a grid world, which cannot list every user's eligible pairs."""
        config = self.config
        n_cal, per_user = phi.shape[0], phi.shape[1]
        weight = np.full(n_cal * per_user, 1.0 / (n_cal * per_user))

        def calibrate(W: FloatArray) -> tuple[float, float]:
            z = np.matmul(phi, W[users]).reshape(-1, 2)  # (n_cal, per_user, 2) logits
            return calibrate_from_logits(
                np.ascontiguousarray(z[:, 0]),
                np.ascontiguousarray(z[:, 1]),
                weight,
                base_ctr=config.base_ctr,
                order_rate=config.order_rate,
            )

        return self._set_intercepts(calibrate)

    def add_users(self, users: UserTruth, rng: np.random.Generator) -> None:
        """Append the coefficients of new users (drifted ones drawn from ``rng``)."""
        W0 = self._add_intercepts(self._weights(users), self.intercepts)
        W1 = self._drifted_weights(users, rng)
        self._W0 = np.concatenate([self._W0, W0])
        if self._W1 is not None and W1 is not None:
            W1 = self._add_intercepts(W1, self._drift_intercepts)
            self._W1 = np.concatenate([self._W1, W1])

    def drift_weight(self, t: float) -> float:
        """How far tastes have moved at time ``t``: 0 before the drift, 1 after it."""
        if self._W1 is None or t < self._drift_from:
            return 0.0
        if t >= self._drift_from + self._drift_span:  # an abrupt drift has span 0
            return 1.0
        return (t - self._drift_from) / self._drift_span

    def user_matrix(self, u: int, t: float) -> FloatArray:
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

    def rates(
        self, u: int, bundle_index: IntArray, t: float, basket: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(p_click, p_order_given_click, order_value)`` of user row ``u`` (basket multiplier
        ``basket``) for the bundle rows ``bundle_index`` at ``t``; indices are not checked."""
        # (2, m) @ (m, k): each output row is contiguous. take() gathers faster than [].
        z = self.user_matrix(u, t).T @ self.phi.take(bundle_index, axis=0).T
        value = self.value.take(bundle_index) * basket
        p = _sigmoid_inplace(z)
        return p[0], p[1], value

    def rates_of(
        self, u: int, phi: FloatArray, value: FloatArray, t: float, basket: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """:meth:`rates` for pairs given by their design rows ``phi`` and order values (a grid
        world's pairs, which have no row in :attr:`phi`)."""
        z = self.user_matrix(u, t).T @ phi.T
        p = _sigmoid_inplace(z)
        return p[0], p[1], value * basket

    def all_rates(self, users: IntArray, t: float) -> tuple[FloatArray, FloatArray]:
        """``(p_click, p_order_given_click)`` of every (user, bundle) pair, shape
        ``(len(users), n_bundles)`` each."""
        W = self._W0[users]
        if self._W1 is not None:
            W = W + self.drift_weight(t) * (self._W1[users] - W)
        # (users, 2, m) @ (m, bundles): click and order logits of every pair in one product.
        p = _sigmoid_inplace(np.matmul(W.transpose(0, 2, 1), self.phi.T))
        return p[:, 0, :], p[:, 1, :]
