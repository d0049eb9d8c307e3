"""Embedded defaults: the demo profile schema, a small synthetic world and an engine built on it.

``bandit simulate`` with no arguments, ``bandit serve-policy`` without ``--model`` and the examples all
start from here, so a newcomer can try everything without data of their own. The data are synthetic
(:mod:`bandit_engine.simulation.world`), generated from a seed: nothing is downloaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pandas as pd

from .engine import Engine
from .policies.registry import make_policy
from .simulation.engines import DEMO_REWARDS, DEMO_SCHEMA, build_engine, demo_schema
from .simulation.world import World
from .simulation.world_config import WorldConfig

__all__ = [
    "DEMO_REWARDS",
    "DEMO_SCHEMA",
    "DEMO_WORLD",
    "build_engine",
    "demo_engine",
    "demo_schema",
    "demo_tables",
    "demo_world",
]


#: A world small enough to build in well under a second.
DEMO_WORLD = WorldConfig(n_users=2000, n_deals=24, n_courses=10)


def _midnight_utc() -> float:
    now = time.time()
    return float(now - now % 86_400)


def demo_world(seed: int = 0, *, start_time: float | None = None) -> World:
    """The demo world (:data:`DEMO_WORLD`) starting at ``start_time``.

    The default is today, 00:00 UTC, with deals valid for one to two years, so that a demo server or
    notebook on the wall clock always has eligible bundles in every city; pass a fixed time for
    reproducible runs (deals then last :data:`DEMO_WORLD`'s 30 to 90 days)."""
    if start_time is None:
        config = replace(
            DEMO_WORLD, start_time=_midnight_utc(), deal_min_days=365.0, deal_max_days=730.0
        )
    else:
        config = replace(DEMO_WORLD, start_time=float(start_time))
    return World.generate(config, seed=seed)


def demo_tables(seed: int = 0, *, start_time: float | None = None) -> dict[str, pd.DataFrame]:
    """The demo data as plain tables: ``knowledge`` and ``groupbuy`` (user profiles), ``deals``,
    ``courses`` and ``bundles``: stand-ins for your own tables."""
    world = demo_world(seed, start_time=start_time)
    return {
        "knowledge": world.knowledge.copy(),
        "groupbuy": world.groupbuy.copy(),
        "deals": world.deals.copy(),
        "courses": world.courses.copy(),
        "bundles": world.bundles[["deal_id", "course_id", "bundle_id"]].copy(),
    }


def demo_engine(
    seed: int = 0,
    *,
    policy: str = "pair_ts",
    start_time: float | None = None,
    clock: Callable[[], float] | None = None,
    **policy_params: Any,
) -> Engine:
    """The demo engine: the seeded demo world and a fresh policy (by registry name).

    Examples
    --------
    >>> engine = demo_engine(seed=3)
    >>> decision = engine.decide("U000001")
    >>> decision.bundle_id in decision.candidates
    True
    """
    world = demo_world(seed, start_time=start_time)
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    params = {"seed": seed, **policy_params}
    # a stable identity per seed, so a restarted demo server recognizes its own checkpoints
    return build_engine(world, make_policy(policy, **params), model_id=f"demo{seed:028d}", **kwargs)
