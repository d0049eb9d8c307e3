"""Who and what exists in the synthetic world: users' hidden truth, their observable profile tables,
and the catalog of deals and courses.

Everything here is drawn from an explicit :class:`numpy.random.Generator`. Hidden truth is drawn
first; the observable tables are noisy, partial summaries of it (a purchase history sampled from the
user's tastes, a coupon rate that is a binomial proportion of the price sensitivity, ...), so the
engine can recover much of the truth from the tables but never all of it.

Users have four latent "lifestyle" factors shared by both platforms (foodie, health, money,
career). They load on course-topic interests *and* on cuisine tastes and price behaviour, which is
what makes a user's knowledge-platform history informative about what they order on the
group-buying platform and back (the cross-domain signal).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = [
    "AGE_BANDS",
    "CITIES",
    "CUISINES",
    "FORMATS",
    "MEMBERSHIPS",
    "SEGMENTS",
    "TOPICS",
    "CourseTruth",
    "DealTruth",
    "UserTruth",
    "draw_courses",
    "draw_deals",
    "draw_users",
    "groupbuy_table",
    "initial_pairs",
    "knowledge_table",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

CITIES: tuple[str, ...] = (
    "shanghai",
    "beijing",
    "shenzhen",
    "hangzhou",
    "chengdu",
    "guangzhou",
    "wuhan",
    "nanjing",
)
CUISINES: tuple[str, ...] = (
    "sichuan",
    "cantonese",
    "japanese",
    "western",
    "hotpot",
    "vegetarian",
    "bbq",
    "dessert",
)
TOPICS: tuple[str, ...] = (
    "python",
    "data",
    "finance",
    "cooking",
    "wine",
    "history",
    "design",
    "fitness",
    "language",
    "parenting",
)
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45+")
MEMBERSHIPS: tuple[str, ...] = ("none", "basic", "premium")
FORMATS: tuple[str, ...] = ("video", "audio", "column")
#: Which platforms a user has a profile on. "new" users have none.
SEGMENTS: tuple[str, ...] = ("both", "knowledge", "groupbuy", "new")

_DAY = 86400.0

# Relative sizes of the cities' user bases (and deal supply).
_CITY_WEIGHT = np.array([1.0, 0.95, 0.7, 0.55, 0.5, 0.6, 0.4, 0.35])
# Local cuisine preferences (rows: CITIES, columns: CUISINES), in logit units.
_CITY_CUISINE = np.array(
    [
        [0.0, 0.1, 0.4, 0.4, 0.0, 0.1, -0.1, 0.3],  # shanghai
        [-0.1, -0.1, 0.1, 0.2, 0.4, 0.0, 0.4, 0.0],  # beijing
        [0.0, 0.7, 0.2, 0.2, 0.0, 0.0, 0.0, 0.3],  # shenzhen
        [-0.1, 0.1, 0.1, 0.0, 0.0, 0.4, -0.1, 0.2],  # hangzhou
        [1.0, -0.3, -0.2, -0.2, 0.8, -0.1, 0.2, -0.1],  # chengdu
        [-0.2, 0.9, 0.0, 0.0, -0.1, 0.0, 0.1, 0.3],  # guangzhou
        [0.4, 0.0, -0.1, -0.1, 0.3, 0.0, 0.3, 0.0],  # wuhan
        [0.0, 0.2, 0.0, 0.0, 0.1, 0.2, 0.0, 0.2],  # nanjing
    ]
)
# Price level of restaurants and log-ticket shift of users, per city.
_CITY_PRICE = np.array([1.15, 1.15, 1.1, 1.0, 0.85, 1.0, 0.85, 0.9])
_AGE_P = np.array([0.22, 0.38, 0.25, 0.15])
# Lifestyle loadings (columns: foodie, health, money, career) on topic interests (rows: TOPICS).
_TOPIC_LIFE = np.array(
    [
        [0.0, 0.0, 0.1, 0.9],  # python
        [0.0, 0.0, 0.2, 0.8],  # data
        [0.0, 0.0, 0.9, 0.3],  # finance
        [0.9, 0.2, 0.0, 0.0],  # cooking
        [0.7, -0.1, -0.2, 0.0],  # wine
        [0.1, 0.0, 0.0, 0.0],  # history
        [0.1, 0.0, 0.0, 0.4],  # design
        [0.0, 0.9, 0.0, 0.0],  # fitness
        [0.1, 0.0, 0.0, 0.3],  # language
        [0.1, 0.2, 0.2, 0.0],  # parenting
    ]
)
# Age effects on topic interests (rows: TOPICS, columns: AGE_BANDS).
_TOPIC_AGE = np.array(
    [
        [0.4, 0.3, -0.2, -0.6],
        [0.2, 0.4, 0.0, -0.5],
        [-0.2, 0.2, 0.3, 0.1],
        [-0.1, 0.0, 0.2, 0.2],
        [-0.4, 0.0, 0.2, 0.4],
        [-0.2, -0.2, 0.1, 0.7],
        [0.5, 0.2, -0.2, -0.5],
        [0.2, 0.2, 0.0, -0.2],
        [0.5, 0.2, -0.1, -0.4],
        [-1.2, 0.0, 1.0, 0.1],
    ]
)
# Lifestyle loadings on cuisine tastes (rows: CUISINES).
_CUISINE_LIFE = np.array(
    [
        [0.1, -0.2, 0.0, 0.0],  # sichuan
        [0.1, 0.1, 0.0, 0.0],  # cantonese
        [0.5, 0.1, -0.2, 0.1],  # japanese
        [0.5, 0.0, -0.2, 0.1],  # western
        [0.1, -0.2, 0.1, 0.0],  # hotpot
        [0.0, 0.8, 0.0, 0.0],  # vegetarian
        [0.0, -0.4, 0.2, 0.0],  # bbq
        [0.2, -0.4, 0.0, 0.0],  # dessert
    ]
)
# Age effects on cuisine tastes (rows: CUISINES, columns: AGE_BANDS).
_CUISINE_AGE = np.array(
    [
        [0.2, 0.1, 0.0, -0.2],
        [-0.2, 0.0, 0.1, 0.4],
        [0.2, 0.2, 0.0, -0.2],
        [0.2, 0.1, 0.0, -0.2],
        [0.4, 0.2, 0.0, -0.2],
        [-0.1, 0.0, 0.1, 0.3],
        [0.4, 0.1, -0.1, -0.4],
        [0.5, 0.1, -0.1, -0.2],
    ]
)
# Age effects on course-format tastes (rows: FORMATS).
_FORMAT_AGE = np.array([[0.4, 0.2, 0.0, -0.3], [-0.2, 0.0, 0.2, 0.3], [-0.3, 0.0, 0.2, 0.4]])
_AGE_PRICE_SENS = np.array([0.6, 0.0, -0.2, -0.1])
_AGE_TICKET = np.array([-0.2, 0.0, 0.1, 0.1])

# Catalog: how common each cuisine is among deals, its typical price per person (CNY).
_CUISINE_SUPPLY = np.array([1.0, 0.9, 0.8, 0.8, 1.0, 0.4, 0.8, 0.7])
_CUISINE_PRICE = np.array([85.0, 110.0, 180.0, 150.0, 120.0, 70.0, 100.0, 45.0])
_TOPIC_SUPPLY = np.array([1.3, 1.2, 1.2, 0.9, 0.7, 0.8, 0.9, 0.9, 1.0, 0.8])
_TOPIC_PRICE = np.array([199.0, 199.0, 149.0, 69.0, 99.0, 59.0, 129.0, 89.0, 149.0, 79.0])
_FORMAT_P = np.array([0.5, 0.25, 0.25])
_NAME_PREFIX = ("Golden", "Jade", "Lotus", "Red Lantern", "Old Street", "Harbor", "Bamboo", "Peony")
_NAME_SUFFIX = ("House", "Kitchen", "Garden", "Bistro", "Corner")


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-z))
    return out


def _sample_rows(rng: np.random.Generator, logits: FloatArray) -> IntArray:
    """One categorical draw per row of ``logits`` (Gumbel-max trick, vectorized)."""
    out: IntArray = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1).astype(np.intp)
    return out


@dataclass
class UserTruth:
    """Hidden truth of every user, one array entry (or row) per user index.

    ``membership`` is the knowledge platform's membership and is 0 ("none") for users without a
    knowledge profile. ``price_sensitivity`` is in (0, 1); ``log_ticket`` is the log of the price
    per person the user is comfortable with (CNY).
    """

    segment: IntArray
    city: IntArray
    age: IntArray
    membership: IntArray
    engagement: FloatArray
    lifestyle: FloatArray  # (n, 4): foodie, health, money, career
    price_sensitivity: FloatArray
    log_ticket: FloatArray
    cuisine_taste: FloatArray  # (n, len(CUISINES))
    topic_taste: FloatArray  # (n, len(TOPICS))
    format_taste: FloatArray  # (n, len(FORMATS))
    hidden: FloatArray  # (n, noise_rank): unobservable taste factors
    seen_cuisines: FloatArray  # (n, len(CUISINES)): 1 where the profile lists the cuisine
    seen_topics: FloatArray  # (n, len(TOPICS)): 1 where the profile lists the topic
    basket: FloatArray  # order-value multiplier (party size, extras), mean about 1
    visit_weight: FloatArray  # relative arrival frequency

    def __len__(self) -> int:
        return int(self.segment.shape[0])

    def concat(self, other: UserTruth) -> UserTruth:
        """Users of ``self`` followed by those of ``other``."""
        parts: dict[str, Any] = {
            f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
            for f in fields(self)
        }
        return UserTruth(**parts)


def draw_users(
    n: int,
    rng: np.random.Generator,
    *,
    n_cities: int,
    noise_rank: int,
    segment_p: FloatArray,
) -> UserTruth:
    """Draw the hidden truth of ``n`` users (segments drawn with probabilities ``segment_p``)."""
    segment = rng.choice(len(SEGMENTS), size=n, p=segment_p).astype(np.intp)
    city_w = _CITY_WEIGHT[:n_cities] / _CITY_WEIGHT[:n_cities].sum()
    city = rng.choice(n_cities, size=n, p=city_w).astype(np.intp)
    age = rng.choice(len(AGE_BANDS), size=n, p=_AGE_P).astype(np.intp)
    engagement = rng.standard_normal(n)
    life = rng.standard_normal((n, 4))
    foodie, money = life[:, 0], life[:, 2]

    topic = (
        life @ _TOPIC_LIFE.T + _TOPIC_AGE[:, age].T + 0.6 * rng.standard_normal((n, len(TOPICS)))
    )
    cuisine = (
        life @ _CUISINE_LIFE.T
        + _CUISINE_AGE[:, age].T
        + _CITY_CUISINE[city]
        + 0.7 * rng.standard_normal((n, len(CUISINES)))
    )
    fmt = _FORMAT_AGE[:, age].T + 0.3 * rng.standard_normal((n, len(FORMATS)))
    ps = _sigmoid(
        -0.3 + 0.5 * money - 0.35 * foodie + _AGE_PRICE_SENS[age] + 0.6 * rng.standard_normal(n)
    )
    log_ticket = (
        np.log(75.0)
        + 0.2 * foodie
        - 0.5 * (ps - 0.5)
        + np.log(_CITY_PRICE[city])
        + _AGE_TICKET[age]
        + 0.25 * rng.standard_normal(n)
    )
    memb_logits = np.stack([np.zeros(n), -0.6 + 0.7 * engagement, -2.0 + 1.0 * engagement], axis=1)
    membership = _sample_rows(rng, memb_logits)
    on_knowledge = (segment == 0) | (segment == 1)
    membership[~on_knowledge] = 0
    hidden = rng.standard_normal((n, noise_rank))
    basket = np.exp(0.25 * rng.standard_normal(n) - 0.03)
    visit_weight = np.exp(0.5 * engagement)
    return UserTruth(
        segment=segment,
        city=city,
        age=age,
        membership=membership,
        engagement=engagement,
        lifestyle=life,
        price_sensitivity=ps,
        log_ticket=log_ticket,
        cuisine_taste=cuisine,
        topic_taste=topic,
        format_taste=fmt,
        hidden=hidden,
        seen_cuisines=np.zeros((n, len(CUISINES))),
        seen_topics=np.zeros((n, len(TOPICS))),
        basket=basket,
        visit_weight=visit_weight,
    )


def _user_ids(index: IntArray) -> list[str]:
    return [f"U{i:06d}" for i in index]


def _grouped_lists(
    owner: IntArray, item: IntArray, n_owners: int, names: tuple[str, ...]
) -> tuple[list[list[str]], FloatArray]:
    """For each owner 0..n_owners-1 the distinct names of its items (in ``names`` order), and the
    same as a 0/1 matrix."""
    present = np.zeros((n_owners, len(names)))
    present[owner, item] = 1.0
    return [[names[j] for j in np.flatnonzero(row)] for row in present], present


def knowledge_table(
    users: UserTruth, index: IntArray, rng: np.random.Generator, start_time: float
) -> pd.DataFrame:
    """Observable knowledge-platform profiles of the users ``index`` (one row each, in order).

    Also records the listed topics in ``users.seen_topics`` (the habit term of the response model).

    Courses bought are sampled from the user's topic interests, so ``topics`` is a noisy, partial
    view of ``topic_taste``. A user who never bought a course has ``topics == []``, zero spend and
    ``last_course_at`` NaN.
    """
    n = index.shape[0]
    e = users.engagement[index]
    memb = users.membership[index]
    rate = np.exp(0.7 + 0.4 * e + 0.2 * (memb == 1) + 0.4 * (memb == 2))
    counts = rng.poisson(rate).astype(np.intp)
    owner = np.repeat(np.arange(n), counts)
    # Topic of each purchase ~ softmax(1.5 * interest): a sharper preference shows up more reliably.
    bought = _sample_rows(rng, 1.5 * users.topic_taste[index][owner])
    topics, users.seen_topics[index] = _grouped_lists(owner, bought, n, TOPICS)
    unit = np.exp(np.log(110.0) + 0.45 * rng.standard_normal(owner.shape[0]))
    spend = np.bincount(owner, weights=unit, minlength=n)
    spend *= np.array([1.0, 0.93, 0.85])[memb]
    days = np.minimum(rng.exponential(np.exp(3.4 - 0.5 * e)), 720.0)
    last = np.where(counts > 0, start_time - days * _DAY, np.nan)
    return pd.DataFrame(
        {
            "user_id": _user_ids(index),
            "age_band": pd.Categorical.from_codes(
                users.age[index], categories=pd.Index(AGE_BANDS), ordered=True
            ),
            "membership": [MEMBERSHIPS[m] for m in memb],
            "topics": topics,
            "courses_bought": counts.astype(np.int64),
            "spend_knowledge": np.round(spend, 2),
            "last_course_at": last,
        }
    )


def groupbuy_table(
    users: UserTruth, index: IntArray, rng: np.random.Generator, start_time: float
) -> pd.DataFrame:
    """Observable group-buying profiles of the users ``index`` (one row each, in order).

    Also records the listed cuisines in ``users.seen_cuisines``.

    ``cuisines`` are the distinct cuisines of a sampled order history (so tastes are seen through
    noise and only their strong parts), ``avg_ticket`` is the comfortable ticket with noise and
    ``coupon_rate`` is the share of past orders paid with a coupon, a binomial proportion whose
    success probability rises with the hidden price sensitivity.
    """
    n = index.shape[0]
    e = users.engagement[index]
    ps = users.price_sensitivity[index]
    orders_90d = rng.poisson(np.exp(0.6 + 0.6 * e)).astype(np.intp)
    n_hist = orders_90d + 2 + rng.poisson(3.0, size=n)
    owner = np.repeat(np.arange(n), n_hist)
    picked = _sample_rows(rng, 1.5 * users.cuisine_taste[index][owner])
    cuisines, users.seen_cuisines[index] = _grouped_lists(owner, picked, n, CUISINES)
    ticket = np.exp(users.log_ticket[index] + 0.15 * rng.standard_normal(n))
    coupon = rng.binomial(n_hist, np.clip(0.05 + 0.9 * ps, 0.0, 1.0)) / n_hist
    # With m orders in 90 days the latest is the minimum of m uniform days, 90 * Beta(1, m);
    # without any, the last order happened before the 90-day window.
    recent = 90.0 * rng.beta(1.0, np.maximum(orders_90d, 1))
    older = 90.0 + rng.exponential(60.0, size=n)
    days = np.where(orders_90d > 0, recent, older)
    return pd.DataFrame(
        {
            "user_id": _user_ids(index),
            "city": [CITIES[c] for c in users.city[index]],
            "cuisines": cuisines,
            "avg_ticket": np.round(ticket, 1),
            "orders_90d": orders_90d.astype(np.int64),
            "coupon_rate": np.round(coupon, 3),
            "last_order_at": start_time - days * _DAY,
        }
    )


@dataclass
class DealTruth:
    """Deals: observable attributes plus a hidden restaurant quality (standard normal)."""

    city: IntArray
    cuisine: IntArray
    price: FloatArray
    discount: FloatArray
    valid_from: FloatArray
    valid_to: FloatArray
    quality: FloatArray
    restaurant: list[str]

    def __len__(self) -> int:
        return int(self.city.shape[0])

    def concat(self, other: DealTruth) -> DealTruth:
        parts: dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            parts[f.name] = a + b if isinstance(a, list) else np.concatenate([a, b])
        return DealTruth(**parts)

    def table(self, first_id: int) -> pd.DataFrame:
        n = len(self)
        return pd.DataFrame(
            {
                "deal_id": [f"D{first_id + i:04d}" for i in range(n)],
                "restaurant": self.restaurant,
                "cuisine": [CUISINES[c] for c in self.cuisine],
                "city": [CITIES[c] for c in self.city],
                "price": self.price,
                "discount": self.discount,
                "valid_from": self.valid_from,
                "valid_to": self.valid_to,
            }
        )


def draw_deals(
    n: int,
    rng: np.random.Generator,
    *,
    n_cities: int,
    valid_from: FloatArray,
    min_days: float,
    max_days: float,
    cover_cities: bool,
) -> DealTruth:
    """Draw ``n`` deals starting at ``valid_from`` (one per deal), lasting U(min_days, max_days).

    With ``cover_cities`` the first ``n_cities`` deals go one to each city (in random order) so that
    no city starts with an empty catalog.
    """
    city_w = _CITY_WEIGHT[:n_cities] / _CITY_WEIGHT[:n_cities].sum()
    city = rng.choice(n_cities, size=n, p=city_w).astype(np.intp)
    if cover_cities:
        m = min(n, n_cities)
        city[:m] = rng.permutation(n_cities)[:m]
    supply = np.log(_CUISINE_SUPPLY)[None, :] + _CITY_CUISINE[city]
    cuisine = _sample_rows(rng, supply)
    price = np.round(
        _CUISINE_PRICE[cuisine] * _CITY_PRICE[city] * np.exp(0.25 * rng.standard_normal(n))
    )
    price = np.maximum(price, 9.0)
    discount = np.round(0.7 * rng.beta(2.2, 3.5, size=n), 2)
    valid_to = valid_from + rng.uniform(min_days, max_days, size=n) * _DAY
    quality = rng.standard_normal(n)
    pre = rng.integers(len(_NAME_PREFIX), size=n)
    suf = rng.integers(len(_NAME_SUFFIX), size=n)
    restaurant = [
        f"{_NAME_PREFIX[p]} {CUISINES[c].title()} {_NAME_SUFFIX[s]}"
        for p, c, s in zip(pre, cuisine, suf, strict=True)
    ]
    return DealTruth(
        city=city,
        cuisine=cuisine,
        price=price.astype(np.float64),
        discount=discount.astype(np.float64),
        valid_from=valid_from.astype(np.float64),
        valid_to=valid_to.astype(np.float64),
        quality=quality,
        restaurant=restaurant,
    )


@dataclass
class CourseTruth:
    """Courses: observable attributes plus a hidden quality of which ``rating`` is a noisy view."""

    topic: IntArray
    price: FloatArray
    rating: FloatArray
    format: IntArray
    quality: FloatArray

    def __len__(self) -> int:
        return int(self.topic.shape[0])

    def concat(self, other: CourseTruth) -> CourseTruth:
        parts: dict[str, Any] = {
            f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
            for f in fields(self)
        }
        return CourseTruth(**parts)

    def table(self, first_id: int) -> pd.DataFrame:
        n = len(self)
        return pd.DataFrame(
            {
                "course_id": [f"C{first_id + i:04d}" for i in range(n)],
                "topic": [TOPICS[t] for t in self.topic],
                "price": self.price,
                "rating": self.rating,
                "format": [FORMATS[f] for f in self.format],
            }
        )


def draw_courses(n: int, rng: np.random.Generator, *, cover_topics: bool) -> CourseTruth:
    """Draw ``n`` courses; with ``cover_topics`` the first ones cover every topic once."""
    topic_w = _TOPIC_SUPPLY / _TOPIC_SUPPLY.sum()
    topic = rng.choice(len(TOPICS), size=n, p=topic_w).astype(np.intp)
    if cover_topics:
        m = min(n, len(TOPICS))
        topic[:m] = rng.permutation(len(TOPICS))[:m]
    raw = _TOPIC_PRICE[topic] * np.exp(0.3 * rng.standard_normal(n))
    # Prices end in 9 as on the real platforms (49, 99, 199 ...).
    price = np.maximum(np.round(raw / 10.0) * 10.0 - 1.0, 9.0)
    quality = rng.standard_normal(n)
    rating = np.clip(np.round(4.3 + 0.3 * quality + 0.2 * rng.standard_normal(n), 1), 1.0, 5.0)
    fmt = rng.choice(len(FORMATS), size=n, p=_FORMAT_P).astype(np.intp)
    return CourseTruth(topic=topic, price=price, rating=rating, format=fmt, quality=quality)


def initial_pairs(
    n_deals: int, n_courses: int, bundles: Literal["all"] | int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Deal and course row of every initial bundle, sorted by (deal, course): every pair
    (``bundles="all"``) or ``bundles`` sampled pairs, one course for every deal first when the
    number allows it."""
    nd, nc = n_deals, n_courses
    if bundles == "all":
        d, c = np.divmod(np.arange(nd * nc), nc)
        return d.astype(np.intp), c.astype(np.intp)
    k = bundles
    chosen = np.zeros(nd * nc, dtype=bool)
    if k >= nd:
        # One course for every deal first, so no deal is unreachable.
        chosen[np.arange(nd) * nc + rng.integers(nc, size=nd)] = True
    rest = np.flatnonzero(~chosen)
    chosen[rng.choice(rest, size=k - int(chosen.sum()), replace=False)] = True
    d, c = np.divmod(np.flatnonzero(chosen), nc)
    return d.astype(np.intp), c.astype(np.intp)
