"""Shared fixtures: small hand-made platform tables and a catalog, built without any data files;
and the rule for tests that need an outside service (:func:`require_service`)."""

from __future__ import annotations

import itertools
import math
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import ndtr

from bandit_engine import Catalog, Categorical, Numeric, ProfileSchema, Recency, Tags
from bandit_engine.simulation.scenario import Scenario

T0 = 1_700_000_000.0


def prob_max_reference(mu: np.ndarray, sd: np.ndarray, a: int) -> float:
    """``P(arm a has the largest of independent N(mu_b, sd_b^2) draws)`` by adaptive quadrature
    (QUADPACK) split at every arm's +-9 sd grid: slow but reliable, the oracle for Thompson
    sampling's propensities. Relative tolerance only (``epsabs=0``), so long shots of 1e-7 are
    still resolved to 1e-12 of themselves."""
    others = np.arange(len(mu)) != a

    def f(t: float) -> float:
        dens = math.exp(-0.5 * ((t - mu[a]) / sd[a]) ** 2) / (sd[a] * math.sqrt(2 * math.pi))
        return float(dens * np.prod(ndtr((t - mu[others]) / sd[others])))

    pts = np.unique(
        np.concatenate([m + s * np.linspace(-9, 9, 19) for m, s in zip(mu, sd, strict=True)])
    )
    return sum(
        integrate.quad(f, lo, hi, epsabs=0.0, epsrel=1e-12, limit=200)[0]
        for lo, hi in itertools.pairwise(pts)
    )


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


# -- outside services ---------------------------------------------------------------------------


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``, as ``.ci/run`` is started)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def service_unavailable(name: str, reason: str) -> NoReturn:
    """Skip a test whose service is unreachable, with the reason; under ``CI=true`` fail it
    instead, so a CI machine that lost a service cannot pass by skipping everything that uses it."""
    message = f"{name} is unreachable ({reason})"
    if in_ci():
        pytest.fail(f"{message}; CI=true, where every service the tests use must be up")
    pytest.skip(f"{message}; start it to run this test")


def require_service(name: str, probe: Callable[[], object]) -> None:
    """Run ``probe`` (which raises when ``name`` cannot be used) and apply the rule of
    :func:`service_unavailable` when it raises. Every test needing a service goes through this."""
    try:
        probe()
    except Exception as exc:
        service_unavailable(name, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")


#: The PostgreSQL server the tests use (a database in which the test user may create schemas).
PG_URL = os.environ.get("BANDIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """:data:`PG_URL`, once it answers (skip, or fail under ``CI=true``, when it does not)."""

    def probe() -> None:
        with _pg_admin() as conn:
            conn.execute("SELECT 1")

    require_service(f"PostgreSQL at {PG_URL}", probe)
    return PG_URL


def pg_schema_url(base: str, schema: str) -> str:
    """``base`` with ``search_path`` set to ``schema`` (libpq's ``options`` parameter)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose log lives in a new, empty schema of its own, dropped after the test."""
    schema = f"bandit_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(pg_server, schema)
    finally:
        with _pg_admin() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_target(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh event log location on each backend: a SQLite path, or a PostgreSQL URL with a
    schema of its own (requested lazily, so the SQLite half runs without PostgreSQL)."""
    if request.param == "sqlite":
        return str(tmp_path / "events.sqlite")
    return str(request.getfixturevalue("pg_url"))
