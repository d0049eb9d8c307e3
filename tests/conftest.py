"""Shared fixtures: small hand-made platform tables and a catalog, built without any data files."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from bandit_engine import Catalog, Categorical, Numeric, ProfileSchema, Recency, Tags
from bandit_engine.simulation.scenario import Scenario

T0 = 1_700_000_000.0


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    knowledge = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u4"],
            "topics": [["python"], ["cooking", "wine"], ["finance"]],
            "courses_bought": [3.0, 1.0, 7.0],
            "last_course_at": [T0 - 86_400 * 3, T0 - 86_400 * 40, None],
        }
    )
    groupbuy = pd.DataFrame(
        {
            "user_id": ["u2", "u3", "u4"],
            "city": ["shanghai", "beijing", "shanghai"],
            "cuisines": [["hotpot"], ["sichuan", "bbq"], []],
            "avg_ticket": [80.0, 120.0, 60.0],
        }
    )
    return {"knowledge": knowledge, "groupbuy": groupbuy}


@pytest.fixture
def schema() -> ProfileSchema:
    return ProfileSchema(
        {
            "knowledge": [Tags("topics"), Numeric("courses_bought"), Recency("last_course_at")],
            "groupbuy": [Categorical("city"), Tags("cuisines"), Numeric("avg_ticket")],
        }
    )


@pytest.fixture
def deals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal_id": ["d1", "d2", "d3", "d4"],
            "city": ["shanghai", "beijing", None, "shanghai"],
            "cuisine": ["hotpot", "sichuan", "bbq", "japanese"],
            "price": [88.0, 120.0, 60.0, 150.0],
            "discount": [0.2, 0.4, 0.1, 0.3],
            "valid_from": [T0 - 1e6, T0 - 1e6, T0 - 1e6, T0 + 1000.0],
            "valid_to": [T0 + 1e7, T0 + 1e7, T0 + 5000.0, T0 + 1e7],
        }
    )


@pytest.fixture
def courses() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "course_id": ["c1", "c2"],
            "topic": ["python", "wine"],
            "format": ["video", "audio"],
            "price": [99.0, 49.0],
            "rating": [4.6, 4.1],
        }
    )


@pytest.fixture
def catalog(deals: pd.DataFrame, courses: pd.DataFrame) -> Catalog:
    return Catalog(deals, courses)


#: The reward spec of the small simulation scenarios used across the simulation tests.
SIM_REWARDS = {"click": 1.0, "order": 2.0, "value_weight": 0.01, "window": 600.0}


def small_scenario(
    name: str, run: dict[str, Any], world: dict[str, Any], /, **overrides: Any
) -> Scenario:
    """A small simulation scenario: LinUCB against uniform and popularity controls unless
    ``overrides`` replace any top-level section."""
    data: dict[str, Any] = {
        "name": name,
        "run": dict(run),
        "world": dict(world),
        "rewards": dict(SIM_REWARDS),
        "policies": [{"name": "linucb", "alpha": 0.1}],
        "controls": [{"name": "uniform"}, {"name": "popularity", "epsilon": 0.05}],
    }
    data.update(overrides)
    return Scenario.from_dict(data)
