"""Merging streaming accumulators: any partition of a log, merged in any tree, gives the
single-pass estimate (to 1e-12: float addition is not associative, so not bit for bit)."""

from __future__ import annotations

import copy
import itertools
import pickle
from collections.abc import Callable
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_evaluation_estimators import WORLD, sample_log

from bandit_engine.errors import ConfigError, DataError, ValidationError
from bandit_engine.evaluation import (
    DMAccumulator,
    DRAccumulator,
    IPSAccumulator,
    ReplayAccumulator,
    SNDRAccumulator,
    SNIPSAccumulator,
    SwitchDRAccumulator,
    merge,
)
from bandit_engine.evaluation.streaming import Moments, OPEAccumulator
from bandit_engine.records import Estimate

N = 400
#: "identical to the single pass to 1e-12": |merged - single| <= 1e-12 * max(1, |single|). The
#: rounding of a merge is a few ulps of the means and co-moments (1e-16 relative); the margin
#: covers the standard error's square root and ratios of means (SNIPS, SNDR, replay).
TOL = 1e-12


def _log() -> dict[str, np.ndarray]:
    arrays, m = sample_log(WORLD, N, seed=5)
    arrays["estimated_rewards"] = np.clip(WORLD.q[m] + 0.05, 0, 1)
    arrays["policy_action"] = arrays["action_dist"].argmax(axis=1)
    # weights up to 1 / min(pscore): make a few large so the sums are not benign
    arrays["pscore"] = np.where(np.arange(N) % 37 == 0, arrays["pscore"] / 20, arrays["pscore"])
    return arrays


LOG = _log()
W_KEYS = ["reward", "action", "pscore", "action_dist"]
DR_KEYS = [*W_KEYS, "estimated_rewards"]
CASES: dict[str, tuple[Callable[[], OPEAccumulator], list[str]]] = {
    "ips": (lambda: IPSAccumulator(), W_KEYS),
    "ips_clip": (lambda: IPSAccumulator(clip=4.0), W_KEYS),
    "snips": (lambda: SNIPSAccumulator(level=0.9), W_KEYS),
    "dm": (lambda: DMAccumulator(), ["action_dist", "estimated_rewards"]),
    "dr": (lambda: DRAccumulator(clip=5.0), DR_KEYS),
    "sndr": (lambda: SNDRAccumulator(), DR_KEYS),
    "switch_dr": (lambda: SwitchDRAccumulator(tau=4.0), DR_KEYS),
    "replay": (
        lambda: ReplayAccumulator(check_uniform=False),
        ["reward", "action", "policy_action"],
    ),
}


def _fed(name: str, lo: int, hi: int) -> OPEAccumulator:
    make, keys = CASES[name]
    acc = make()
    if hi > lo:
        acc.update(**{k: LOG[k][lo:hi] for k in keys})  # type: ignore[attr-defined]
    return acc


def _close(a: float, b: float) -> bool:
    if np.isnan(a) and np.isnan(b):
        return True
    return abs(a - b) <= TOL * max(1.0, abs(b))


def assert_same(merged: Estimate, single: Estimate) -> None:
    for f in fields(Estimate):
        x, y = getattr(merged, f.name), getattr(single, f.name)
        if isinstance(x, float):
            assert _close(x, y), (f.name, x, y)
        elif isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                assert _close(x[key], y[key]), (key, x[key], y[key])
        else:
            assert x == y, f.name


@st.composite
def partitions_and_trees(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Cut points of the log into parts (some empty), and a random binary merge tree over them
    given as the sequence of (i, j) pairs of the current list to merge (any two, not only
    neighbours: merging is commutative too)."""
    cuts = sorted(draw(st.lists(st.integers(0, N), min_size=0, max_size=12)))
    bounds = [0, *cuts, N]
    parts = list(itertools.pairwise(bounds))
    steps = []
    for size in range(len(parts), 1, -1):
        i = draw(st.integers(0, size - 1))
        j = draw(st.integers(0, size - 2))
        steps.append((i, j))
    return parts, steps


def _merge_tree(accs: list[OPEAccumulator], steps: list[tuple[int, int]]) -> OPEAccumulator:
    pool = list(accs)
    for i, j in steps:
        a = pool.pop(i)
        b = pool.pop(j)
        pool.append(a.merge(b))
    assert len(pool) == 1
    return pool[0]


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=partitions_and_trees())
def test_any_partition_and_merge_tree_equals_the_single_pass(
    name: str, plan: tuple[list[tuple[int, int]], list[tuple[int, int]]]
) -> None:
    parts, steps = plan
    single = _fed(name, 0, N).result()
    merged = _merge_tree([_fed(name, lo, hi) for lo, hi in parts], steps)
    assert_same(merged.result(), single)


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=25, deadline=None)
@given(cuts=st.tuples(st.integers(1, N - 2), st.integers(1, N - 2)).map(sorted))
def test_merge_is_associative_and_leaves_its_inputs_alone(name: str, cuts: list[int]) -> None:
    lo, hi = cuts[0], max(cuts[1], cuts[0] + 1)
    a, b, c = _fed(name, 0, lo), _fed(name, lo, hi), _fed(name, hi, N)
    before = [pickle.dumps(x.__dict__) for x in (a, b, c)]
    left = a.merge(b).merge(c).result()
    right = a.merge(b.merge(c)).result()
    assert_same(left, right)
    assert_same(merge(a, b, c).result(), left)
    assert [pickle.dumps(x.__dict__) for x in (a, b, c)] == before


def test_an_empty_accumulator_is_the_identity() -> None:
    full = _fed("dr", 0, N)
    for merged in (full.merge(DRAccumulator(clip=5.0)), DRAccumulator(clip=5.0).merge(full)):
        assert_same(merged.result(), full.result())
    with pytest.raises(DataError, match="no rows"):
        merge(IPSAccumulator(), IPSAccumulator()).result()


def test_moments_merge_is_accurate_with_a_large_offset() -> None:
    rng = np.random.default_rng(0)
    terms = 1e9 + rng.normal(size=(2, 1000))
    one = Moments(2)
    one.add(terms)
    a, b = Moments(2), Moments(2)
    a.add(terms[:, :313])
    b.add(terms[:, 313:])
    both = a.merge(b)
    assert both.n == 1000
    np.testing.assert_allclose(both.mean, one.mean, rtol=1e-15)
    # the means themselves are known to 1e9 * 2^-53 ~ 1e-7 around 1e9: that, not the merge,
    # bounds the co-moment's accuracy (naive sums of squares would lose every digit here)
    np.testing.assert_allclose(both.covariance(), np.cov(terms - 1e9), atol=1e-8)
    np.testing.assert_allclose(both.covariance(), one.covariance(), atol=1e-8)


def test_support_diagnostics_merge_exactly_in_their_counts() -> None:
    a, b = _fed("ips", 0, 150), _fed("ips", 150, N)
    merged, single = a.merge(b).support_, _fed("ips", 0, N).support_
    assert merged.n_rows == single.n_rows == N
    assert merged.n_deterministic == single.n_deterministic
    assert merged.n_unsupported == single.n_unsupported
    assert merged.max_w == single.max_w
    assert _close(merged.unsupported_mass_sum, single.unsupported_mass_sum)


def test_merging_refuses_other_estimators_and_other_settings() -> None:
    with pytest.raises(ConfigError, match="must be a IPSAccumulator"):
        IPSAccumulator().merge(SNIPSAccumulator())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"clip must be the same in both accumulators, got"):
        IPSAccumulator(clip=3.0).merge(IPSAccumulator())
    with pytest.raises(ConfigError, match="tau must be the same"):
        SwitchDRAccumulator(tau=1.0).merge(SwitchDRAccumulator(tau=2.0))
    with pytest.raises(ConfigError, match="level must be the same"):
        DMAccumulator(level=0.9).merge(DMAccumulator())


def test_replay_parts_must_share_the_uniform_propensity() -> None:
    def part(p: float) -> ReplayAccumulator:
        acc = ReplayAccumulator()
        acc.update(reward=np.ones(4), action=np.zeros(4), policy_action=np.zeros(4),
                   pscore=np.full(4, p))  # fmt: skip
        return acc

    assert part(0.25).merge(part(0.25)).result().n == 8
    with pytest.raises(DataError, match="different constant propensities"):
        part(0.25).merge(part(0.5))


def test_accumulators_survive_pickling_for_other_processes() -> None:
    # partial accumulators travel between processes (a process pool, Dask) by pickle
    a = _fed("sndr", 0, 200)
    b = pickle.loads(pickle.dumps(_fed("sndr", 200, N)))
    assert_same(copy.deepcopy(a).merge(b).result(), _fed("sndr", 0, N).result())


@pytest.mark.parametrize("name", ["dr", "sndr", "switch_dr"])
def test_rows_given_reduced_give_the_full_arrays_estimate(name: str) -> None:
    # update_reduced takes the three per-row numbers the (n, K) arrays reduce to; chunked either
    # way over the same cuts, the estimate and every diagnostic must agree to the merge tolerance
    dist, q, a = LOG["action_dist"], LOG["estimated_rewards"], LOG["action"]
    rows = np.arange(N)
    full, reduced = CASES[name][0](), CASES[name][0]()
    for lo, hi in [(0, 150), (150, 151), (151, N)]:
        sl = slice(lo, hi)
        full.update(**{k: LOG[k][sl] for k in DR_KEYS})  # type: ignore[attr-defined]
        reduced.update_reduced(  # type: ignore[attr-defined]
            reward=LOG["reward"][sl],
            action=a[sl],
            pscore=LOG["pscore"][sl],
            action_prob=dist[rows, a][sl],
            model_value=np.einsum("ij,ij->i", dist, q)[sl],
            estimated_reward=q[rows, a][sl],
        )
    assert_same(reduced.result(), full.result())


def test_reduced_rows_name_the_field_that_is_wrong() -> None:
    good = {
        "reward": np.array([1.0, 0.0]),
        "action": np.array([0, 1]),
        "pscore": np.array([0.5, 0.5]),
        "action_prob": np.array([0.2, 0.7]),
        "model_value": np.array([0.1, 0.2]),
        "estimated_reward": np.array([0.1, 0.3]),
    }
    for field, bad, words in [
        ("model_value", np.array([0.1]), "model_value must have shape (n,) = (2,)"),
        ("estimated_reward", np.array([0.1, np.nan]), "estimated_reward must be finite"),
        ("action_prob", np.array([0.2, 1.5]), "action_prob must be in [0, 1]"),
    ]:
        with pytest.raises(ValidationError) as err:
            DRAccumulator().update_reduced(**{**good, field: bad})
        assert words in str(err.value)
        assert err.value.field == field
