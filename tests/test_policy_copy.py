"""Copies of trained ridge policies (``copy.deepcopy``, ``copy.copy``, pickle) score like the
original and then evolve like it.

Regression: ``RidgeRows`` keeps views of its state arrays for scoring; a deep copy used to copy
each view as a separate array, so the copy scored with the numbers of the moment of copying.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bandit_engine.policies.linucb import LinUCB
from bandit_engine.policies.thompson import LinearTS

D, P, N_ARMS = 5, 2, 12
ARMS = [f"a{i}" for i in range(N_ARMS)]
Z = np.random.default_rng(3).normal(size=(N_ARMS, P))

Pol = LinUCB | LinearTS

FACTORIES: dict[str, Callable[[], Pol]] = {
    "linucb": lambda: LinUCB(alpha=0.8, seed=1),
    "linucb-window": lambda: LinUCB(alpha=0.8, window=7, seed=1),
    "linucb-discount": lambda: LinUCB(alpha=0.8, discount=0.9, seed=1),
    "ts": lambda: LinearTS(v=0.4, seed=1),
    "ts-epsilon": lambda: LinearTS(v=0.4, epsilon=0.1, seed=1),
    "ts-shared": lambda: LinearTS(v=0.4, mode="shared", propensity_samples=50, seed=1),
}

# Candidate lists exercising every row layout: all arms (rows 0..k-1), a subset in catalog
# order, and a shuffled subset.
SUBSETS = [
    list(range(N_ARMS)),
    [2, 3, 4, 5, 6, 7],
    [9, 1, 4, 0],
]


def _decide_and_learn(pol: Pol, rng: np.random.Generator, rounds: int) -> list[Any]:
    """``rounds`` choose/update steps on ``rng``'s contexts and rewards; returns the choices."""
    out = []
    for t in range(rounds):
        sub = SUBSETS[t % len(SUBSETS)]
        arms = tuple(ARMS[i] for i in sub)
        x = rng.normal(size=D)
        c = pol.choose(x, arms, Z[sub])
        out.append((c.index, c.propensity, c.scores.tolist()))
        reward = float(rng.random() < 0.3)
        pol.update(x, arms[c.index], Z[sub][c.index], reward, c.propensity)
    return out


def _trained(name: str) -> Pol:
    pol = FACTORIES[name]()
    _decide_and_learn(pol, np.random.default_rng(0), 150)
    return pol


def _probabilities(pol: Pol, x: np.ndarray) -> list[Any]:
    return [pol.probabilities(x, [ARMS[i] for i in sub], Z[sub]) for sub in SUBSETS]


def _assert_same_probabilities(a: list[Any], b: list[Any]) -> None:
    for pa, pb in zip(a, b, strict=True):
        if pa is None:
            assert pb is None
        else:
            np.testing.assert_array_equal(pa, pb)


def _pickled(pol: Pol) -> Pol:
    out: Pol = pickle.loads(pickle.dumps(pol))
    return out


@pytest.mark.parametrize("how", [copy.deepcopy, _pickled], ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_deep_copy_scores_and_evolves_like_the_original(
    name: str, how: Callable[[Pol], Pol]
) -> None:
    pol = _trained(name)
    twin = how(pol)
    x = np.random.default_rng(9).normal(size=D)
    _assert_same_probabilities(_probabilities(twin, x), _probabilities(pol, x))
    # Same generator state and same learned state: identical choices from here on.
    mine = _decide_and_learn(pol, np.random.default_rng(5), 60)
    theirs = _decide_and_learn(twin, np.random.default_rng(5), 60)
    assert theirs == mine
    _assert_same_probabilities(_probabilities(twin, x), _probabilities(pol, x))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_deep_copy_is_independent(name: str) -> None:
    pol = _trained(name)
    x = np.random.default_rng(9).normal(size=D)
    before = _probabilities(pol, x)
    twin = copy.deepcopy(pol)
    _decide_and_learn(twin, np.random.default_rng(6), 40)  # only the copy learns
    _assert_same_probabilities(_probabilities(pol, x), before)
    assert twin.n_updates_ == pol.n_updates_ + 40


@pytest.mark.parametrize("name", list(FACTORIES))
def test_shallow_copies_score_like_the_original(name: str) -> None:
    pol = _trained(name)
    x = np.random.default_rng(9).normal(size=D)
    want = _probabilities(pol, x)
    _assert_same_probabilities(_probabilities(copy.copy(pol), x), want)
    ridge = getattr(pol, "ridge_", None)
    assert ridge is not None
    # A copy of the ridge state alone scores like the original too.
    shallow = copy.copy(ridge)
    deep = copy.deepcopy(ridge)
    rows = np.array([9, 1, 4, 0], dtype=np.intp)
    if name != "ts-shared":  # the shared model has one row
        for other in (shallow, deep):
            m, q = other.mean_var(x, rows)
            m0, q0 = ridge.mean_var(x, rows)
            np.testing.assert_array_equal(m, m0)
            np.testing.assert_array_equal(q, q0)


def test_copies_keep_aligned_state() -> None:
    pol = _trained("linucb")
    twin = copy.deepcopy(pol)
    ridge = getattr(twin, "ridge_", None)
    assert ridge is not None
    for arr in (ridge.A_inv, ridge.b, ridge.theta):
        assert arr.ctypes.data % 64 == 0  # BLAS runs faster on 64-byte aligned rows
