"""Engines for a synthetic world, built exactly as a user would build one for their own data.

The demo profile schema names the columns the world emits; :func:`build_engine` fits it on the
world's platform tables, makes a catalog of the world's deals, courses and bundles (deals eligible in
their city and validity window) and wraps a policy in an :class:`~bandit_engine.Engine`. The
simulator, the demo engine (:mod:`bandit_engine.demo`) and the benchmarks all build their engines
here, so there is no simulation-only engine.
"""

from __future__ import annotations

from typing import Any

from ..catalog import DEFAULT_COURSE_FEATURES, DEFAULT_DEAL_FEATURES, Catalog, EligibilityRules
from ..engine import Engine
from ..features import Behaviour, Categorical, Numeric, ProfileSchema, Recency, Tags
from ..policies.base import Policy
from ..rewards import RewardSpec
from .world import World

__all__ = ["DEMO_REWARDS", "DEMO_SCHEMA", "build_engine", "demo_schema"]


def demo_schema() -> ProfileSchema:
    """The profile schema of the two demo platforms (the columns the synthetic world emits)."""
    return ProfileSchema(
        {
            "knowledge": [
                Categorical("age_band"),
                Categorical("membership"),
                Tags("topics"),
                Numeric("courses_bought", log=True),
                Numeric("spend_knowledge", log=True),
                Recency("last_course_at"),
            ],
            "groupbuy": [
                Categorical("city"),
                Tags("cuisines"),
                Numeric("avg_ticket", log=True),
                Numeric("orders_90d", log=True),
                Numeric("coupon_rate"),
                Recency("last_order_at"),
            ],
            # live behaviour kept by the engine (features/behaviour.py): not read from a table
            "behaviour": [Behaviour("behaviour")],
        },
        key="user_id",
    )


DEMO_SCHEMA = demo_schema()
#: Clicks count 1, orders 2 more, plus 1 per 100 CNY of order value; one-day attribution window.
DEMO_REWARDS = RewardSpec(click=1.0, order=2.0, value_weight=0.01, window=86_400.0)


def build_engine(
    world: World,
    policy: Policy,
    *,
    schema: ProfileSchema | None = None,
    rewards: RewardSpec | None = None,
    load_profiles: bool = True,
    **engine_kwargs: Any,
) -> Engine:
    """An engine for ``world``: schema fitted on its platform tables, catalog from its deals, courses
    and bundles, deals eligible in their city and validity window (a grid world's catalog is
    unlisted: ``materialize=False``)."""
    tables = {"knowledge": world.knowledge, "groupbuy": world.groupbuy}
    features = (schema if schema is not None else DEMO_SCHEMA).fit(
        tables, now=world.config.start_time
    )
    catalog = Catalog(
        world.deals,
        world.courses,
        # a grid world lists no bundles: every pair, never materialised (a grid policy decides)
        bundles=None if world.is_grid else world.bundles[["deal_id", "course_id", "bundle_id"]],
        deal_features=DEFAULT_DEAL_FEATURES,
        course_features=DEFAULT_COURSE_FEATURES,
        rules=EligibilityRules(user_city="groupbuy.city", deal_city="city"),
        materialize=not world.is_grid,
    )
    engine = Engine(
        features, catalog, policy, rewards if rewards is not None else DEMO_REWARDS, **engine_kwargs
    )
    if load_profiles:
        engine.load_profiles(tables)
    return engine
