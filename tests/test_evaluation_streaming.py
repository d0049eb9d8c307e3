"""Streaming accumulators give the in-memory result whatever the chunking."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
import pytest
from test_evaluation_estimators import WORLD, make_world, sample_log

from bandit_engine.errors import DataError
from bandit_engine.evaluation import (
    DMAccumulator,
    DRAccumulator,
    IPSAccumulator,
    ReplayAccumulator,
    SNDRAccumulator,
    SNIPSAccumulator,
    SwitchDRAccumulator,
    dm,
    dr,
    ips,
    replay,
    sndr,
    snips,
    switch_dr,
)
from bandit_engine.evaluation.streaming import Moments
from bandit_engine.records import Estimate

N = 5003
CUTS = [0, 1, 2, 700, 701, 2500, 4999, N]  # uneven, including 1-row chunks


def _assert_same(a: Estimate, b: Estimate) -> None:
    for f in fields(Estimate):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-10, abs=1e-12, nan_ok=True), f.name
        elif isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                assert x[key] == pytest.approx(y[key], rel=1e-10, abs=1e-12), key
        else:
            assert x == y, f.name


def _chunks(arrays: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v[lo:hi] for k, v in arrays.items()} for lo, hi in itertools.pairwise(CUTS)]


@pytest.fixture(scope="module")
def log() -> dict[str, np.ndarray]:
    arrays, m = sample_log(WORLD, N, seed=21)
    arrays["estimated_rewards"] = np.clip(WORLD.q[m] + 0.05, 0, 1)
    arrays["position"] = np.random.default_rng(0).integers(3, size=N)
    return arrays


CASES: list[tuple[str, Callable[[], Any], Callable[..., Estimate], dict[str, Any], list[str]]] = [
    ("ips", lambda: IPSAccumulator(), ips, {}, ["reward", "action", "pscore", "action_dist"]),
    (
        "ips_clip",
        lambda: IPSAccumulator(clip=3.0),
        ips,
        {"clip": 3.0},
        ["reward", "action", "pscore", "action_dist"],
    ),
    (
        "snips",
        lambda: SNIPSAccumulator(level=0.9),
        snips,
        {"level": 0.9},
        ["reward", "action", "pscore", "action_dist"],
    ),
    ("dm", lambda: DMAccumulator(), dm, {}, ["action_dist", "estimated_rewards"]),
    (
        "dr",
        lambda: DRAccumulator(clip=5.0),
        dr,
        {"clip": 5.0},
        ["reward", "action", "pscore", "action_dist", "estimated_rewards"],
    ),
    (
        "sndr",
        lambda: SNDRAccumulator(),
        sndr,
        {},
        ["reward", "action", "pscore", "action_dist", "estimated_rewards"],
    ),
    (
        "switch_dr",
        lambda: SwitchDRAccumulator(tau=4.0),
        switch_dr,
        {"tau": 4.0},
        ["reward", "action", "pscore", "action_dist", "estimated_rewards"],
    ),
]


@pytest.mark.parametrize(("name", "make", "fn", "kwargs", "keys"), CASES, ids=[c[0] for c in CASES])
def test_chunks_equal_one_call(
    log: dict[str, np.ndarray],
    name: str,
    make: Callable[[], Any],
    fn: Callable[..., Estimate],
    kwargs: dict[str, Any],
    keys: list[str],
) -> None:
    arrays = {k: log[k] for k in keys}
    acc = make()
    for chunk in _chunks(arrays):
        acc.update(**chunk)
    streamed = acc.result()
    _assert_same(streamed, fn(**arrays, **kwargs))
    assert streamed.n == N


def test_ips_streams_from_action_prob_alone(log: dict[str, np.ndarray]) -> None:
    prob = log["action_dist"][np.arange(N), log["action"]]
    arrays = {
        "reward": log["reward"],
        "action": log["action"],
        "pscore": log["pscore"],
        "action_prob": prob,
    }
    acc = IPSAccumulator()
    for chunk in _chunks(arrays):
        acc.update(**chunk)
    _assert_same(
        acc.result(),
        ips(
            reward=log["reward"],
            action=log["action"],
            pscore=log["pscore"],
            action_dist=log["action_dist"],
        ),
    )


def test_replay_streams_with_the_same_draws() -> None:
    world = make_world(seed=3, uniform=True)
    arrays, m = sample_log(world, N, seed=22)
    args = {
        "reward": arrays["reward"],
        "action": arrays["action"],
        "action_dist": world.target[m],
        "pscore": arrays["pscore"],
    }
    acc = ReplayAccumulator(seed=7)
    for chunk in _chunks(args):
        acc.update(**chunk)
    _assert_same(acc.result(), replay(**args, seed=7))


def test_result_without_rows_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no rows were added"):
        IPSAccumulator().result()


def test_moments_are_accurate_with_a_large_offset() -> None:
    # Naive sums of squares lose every digit of a variance of 1 around 1e9; the merge must not.
    g = np.random.default_rng(3)
    x = 1e9 + g.normal(size=(10_000, 2))
    mom = Moments(2)
    for lo in range(0, 10_000, 777):
        mom.add(x[lo : lo + 777].T)
    assert mom.n == 10_000
    np.testing.assert_allclose(mom.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(mom.covariance(), np.cov(x.T), rtol=1e-6)
