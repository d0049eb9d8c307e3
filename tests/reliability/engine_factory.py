"""A small, fully seeded engine for server tests (no dependency on /work/shared data).

Two platforms, a handful of deals and courses in two cities, LinUCB with epsilon exploration so
propensities are informative. Built from literals, so it is identical in every process.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bandit_engine.catalog import Catalog
from bandit_engine.engine import Engine
from bandit_engine.features import Categorical, Numeric, ProfileSchema
from bandit_engine.policies import LinUCB
from bandit_engine.rewards import RewardSpec

__all__ = ["save_small_engine", "small_engine"]

KNOWLEDGE = pd.DataFrame(
    {
        "user_id": ["u1", "u2", "u3", "u4"],
        "membership": ["gold", "none", "silver", "none"],
        "spend": [120.0, 0.0, 40.0, 5.0],
    }
)
GROUPBUY = pd.DataFrame(
    {
        "user_id": ["u1", "u2", "u3", "u5"],
        "city": ["shanghai", "beijing", "shanghai", "beijing"],
        "avg_ticket": [80.0, 60.0, 150.0, 45.0],
    }
)
DEALS = pd.DataFrame(
    {
        "deal_id": ["d1", "d2", "d3", "d4"],
        "city": ["shanghai", "shanghai", "beijing", None],
        "cuisine": ["hotpot", "sichuan", "dumplings", "coffee"],
        "price": [88.0, 120.0, 45.0, 30.0],
        "discount": [0.2, 0.35, 0.1, 0.5],
    }
)
COURSES = pd.DataFrame(
    {
        "course_id": ["c1", "c2", "c3"],
        "topic": ["python", "finance", "cooking"],
        "format": ["video", "live", "video"],
        "price": [99.0, 299.0, 49.0],
        "rating": [4.6, 4.2, 4.8],
    }
)


def small_engine(*, seed: int = 7, window: float = 30.0) -> Engine:
    """A seeded engine over 12 bundles; rewards: 1 per click, 2 per order, window in seconds."""
    schema = ProfileSchema(
        {
            "knowledge": [Categorical("membership"), Numeric("spend", log=True)],
            "groupbuy": [Categorical("city"), Numeric("avg_ticket")],
        }
    )
    engine = Engine.build(
        schema=schema,
        profiles={"knowledge": KNOWLEDGE, "groupbuy": GROUPBUY},
        catalog=Catalog(DEALS, COURSES),
        policy=LinUCB(alpha=0.5, epsilon=0.1, seed=seed),
        rewards=RewardSpec(click=1.0, order=2.0, window=window),
    )
    engine.model_id = f"small{seed:027d}"
    return engine


def save_small_engine(path: Path, *, seed: int = 7, window: float = 30.0) -> Path:
    """Save :func:`small_engine` to ``path`` (what ``--model`` loads)."""
    small_engine(seed=seed, window=window).save(path)
    return path
