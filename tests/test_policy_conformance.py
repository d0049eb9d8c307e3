"""One conformance suite for every policy (in the spirit of scikit-learn's estimator checks).

Each entry of ``CASES`` builds a policy from a seed and declares what it can do; every check
runs on every case and reads those capabilities explicitly, so nothing is skipped silently.
A new back-end (e.g. Vowpal Wabbit) joins the suite by appending one ``Case`` line.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest

from bandit_engine.errors import ValidationError
from bandit_engine.policies import (
    EpsilonGreedy,
    FixedRule,
    HybridLinUCB,
    LinearTS,
    LinUCB,
    Policy,
    Popularity,
    UniformRandom,
    make_policy,
    policy_from_dict,
    policy_to_dict,
)


@dataclass(frozen=True)
class Case:
    """A policy factory and its declared capabilities.

    learns
        ``"contextual"``: must beat uniform on a contextual task; ``"context_free"``: must
        beat uniform when one bundle is best for everyone; ``"none"``: must not change its
        choice distribution when trained (uniform random, fixed business rule).
    new_arm
        What a bundle added mid-run that is the best one should get: ``"learned"`` (chosen
        most of the time after a while), ``"immediate"`` (the rule ranks it first at once) or
        ``"uniform"`` (its fair share 1/k).
    """

    id: str
    factory: Callable[[int], Policy]
    learns: Literal["contextual", "context_free", "none"]
    new_arm: Literal["learned", "immediate", "uniform"]


CASES = [
    Case("linucb", lambda s: LinUCB(alpha=0.5, seed=s), "contextual", "learned"),
    Case(
        "linucb-eps-window",
        lambda s: LinUCB(alpha=0.3, epsilon=0.1, window=300, seed=s),
        "contextual",
        "learned",
    ),
    Case(
        "linucb-discount",
        lambda s: LinUCB(alpha=0.5, discount=0.995, seed=s),
        "contextual",
        "learned",
    ),
    Case(
        "hybrid", lambda s: HybridLinUCB(alpha=0.5, epsilon=0.05, seed=s), "contextual", "learned"
    ),
    Case("lin_ts", lambda s: LinearTS(v=0.2, seed=s), "contextual", "learned"),
    Case(
        "lin_ts-eps-discount",
        lambda s: LinearTS(v=0.2, epsilon=0.05, discount=0.995, seed=s),
        "contextual",
        "learned",
    ),
    Case(
        "lin_ts-shared",
        lambda s: LinearTS(v=0.2, mode="shared", propensity_samples=200, seed=s),
        "contextual",
        "learned",
    ),
    Case("epsilon_greedy", lambda s: EpsilonGreedy(epsilon=0.1, seed=s), "context_free", "learned"),
    Case("popularity", lambda s: Popularity(epsilon=0.1, seed=s), "context_free", "learned"),
    Case("fixed_rule", lambda s: FixedRule(column=0, epsilon=0.2, seed=s), "none", "immediate"),
    Case("uniform", lambda s: UniformRandom(seed=s), "none", "uniform"),
    # Vowpal Wabbit through the lazy registry entry. exploration="cover" is left to
    # tests/test_policy_vw.py: it passes every check here but test_new_arm_mid_run, taking the
    # new best bundle in only 29-85% of the last 600 rounds over seeds 0-7 (46% with seed 8).
    *[
        Case(
            f"vw-{e}",
            lambda s, e=e: make_policy("vw", exploration=e, seed=s),
            "contextual",
            "learned",
        )
        for e in ("epsilon", "squarecb", "bag", "regcb")
    ],
]

D, P = 5, 3


class World:
    """Bundles with features ``z`` and logistic click probabilities.

    ``logit = 1.5 z_0 + x_{1:3}' M z_{1:3} - 0.5``: the first bundle feature is good for
    everyone (with ``M = 0`` the bundle with the largest ``z_0`` is best for every user, which
    context-free baselines can find), the interaction term makes the best choice depend on the
    user. The bundle added mid-run has ``z = (2.5, 0, 0)``: click rate 0.96 for everyone.
    """

    def __init__(self, seed: int, n_arms: int = 5) -> None:
        rng = np.random.default_rng(seed)
        self.Z = np.column_stack([np.linspace(-1.0, 1.0, n_arms), rng.normal(size=(n_arms, 2))])
        self.arms = [f"b{i}" for i in range(n_arms)]
        self.M = 1.5 * rng.normal(size=(2, 2))
        self.rng = np.random.default_rng(seed + 1)

    def add_best_arm(self) -> None:
        self.Z = np.vstack([self.Z, [2.5, 0.0, 0.0]])
        self.arms = [*self.arms, "new-best"]

    def context(self) -> np.ndarray:
        return np.r_[1.0, self.rng.normal(size=D - 1)]

    def means(self, x: np.ndarray, Z: np.ndarray) -> np.ndarray:
        logit = 1.5 * Z[:, 0] + (x[1:3] @ self.M) @ Z[:, 1:].T - 0.5
        return 1.0 / (1.0 + np.exp(-logit))


def run(policy: Policy, world: World, rounds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play ``rounds`` rounds; returns chosen indices, their expected rewards and the
    expected reward of a uniform choice in the same contexts."""
    chosen, got, uniform = [], [], []
    for _ in range(rounds):
        x = world.context()
        c = policy.choose(x, world.arms, world.Z)
        mu = world.means(x, world.Z)
        reward = float(world.rng.random() < mu[c.index])
        policy.update(x, world.arms[c.index], world.Z[c.index], reward, c.propensity)
        chosen.append(c.index)
        got.append(mu[c.index])
        uniform.append(mu.mean())
    return np.array(chosen), np.array(got), np.array(uniform)


def split_state(tree: Any, side: dict[str, Any], path: str = "") -> Any:
    """Replace arrays and bytes by references (like the engine's npz/blob writer)."""
    if isinstance(tree, np.ndarray | bytes):
        side[path] = tree.copy() if isinstance(tree, np.ndarray) else tree
        return {"__ref__": path}
    if isinstance(tree, dict):
        return {k: split_state(v, side, f"{path}/{k}") for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [split_state(v, side, f"{path}/{i}") for i, v in enumerate(tree)]
    return tree


def join_state(tree: Any, side: dict[str, Any]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__ref__"}:
            return side[tree["__ref__"]]
        return {k: join_state(v, side) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_state(v, side) for v in tree]
    return tree


def via_file_format(policy: Policy) -> Policy:
    side: dict[str, Any] = {}
    text = json.dumps(split_state(policy_to_dict(policy), side))
    return policy_from_dict(join_state(json.loads(text), side))


cases = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


@cases
@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "trained"])
def test_propensities_match_choice_frequencies(case: Case, trained: bool) -> None:
    world = World(seed=3)
    policy = case.factory(11)
    if trained:
        run(policy, world, 300)
    x = np.r_[1.0, 0.4, -0.3, 0.2, 0.1]
    exact = policy.probabilities(x, world.arms, world.Z)
    n, k = 6000, len(world.arms)
    counts = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros(k)
    for t in range(n):
        if exact is not None and t < 10:  # choosing must not change the frozen distribution
            rng_before = json.dumps(policy.get_state()["rng"])
            again = policy.probabilities(x, world.arms, world.Z)
            assert again is not None
            np.testing.assert_allclose(again, exact, rtol=1e-12, atol=0)
            assert json.dumps(policy.get_state()["rng"]) == rng_before  # no randomness used
        c = policy.choose(x, world.arms, world.Z)
        assert 0.0 < c.propensity <= 1.0
        assert c.scores.shape == (k,)
        if exact is not None:
            pi = exact
        else:
            assert c.probabilities is not None, "no exact or conditional distribution"
            pi = c.probabilities
        if c.probabilities is not None:
            assert c.probabilities.sum() == pytest.approx(1.0, abs=1e-9)
        assert c.propensity == pytest.approx(pi[c.index], rel=1e-9)
        counts[c.index] += 1
        expected += pi
        variance += pi * (1 - pi)
    # Given the policy's (possibly sample-conditional) distribution, each arm's count minus
    # the sum of its probabilities is a martingale with the variance below, so z is close to
    # N(0, 1). |z| < 4 fails with probability ~6e-5 per arm (~1% over the ~110 arm checks of
    # the suite; seeds are fixed, so the outcome is deterministic). Power: with n = 6000 a
    # propensity off by 0.03 for an arm chosen 20% of the time shifts z by ~5.8.
    for a in range(k):
        if variance[a] < 1e-12:
            assert counts[a] == pytest.approx(expected[a], abs=1e-6)
        else:
            z = (counts[a] - expected[a]) / np.sqrt(variance[a])
            assert abs(z) < 4.0, f"arm {a}: {counts[a]} chosen, {expected[a]:.1f} expected"


@cases
def test_same_seed_same_decisions(case: Case) -> None:
    a, b = case.factory(5), case.factory(5)
    ca, ga, _ = run(a, World(seed=1), 150)
    cb, gb, _ = run(b, World(seed=1), 150)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(ga, gb)
    assert a.get_params() == b.get_params()


@cases
@pytest.mark.parametrize("trained", [0, 200], ids=["fresh", "trained"])
def test_state_round_trip_gives_identical_decisions(case: Case, trained: int) -> None:
    world = World(seed=2)
    original = case.factory(9)
    if trained:
        run(original, world, trained)
    restored = via_file_format(original)
    assert type(restored) is type(original)
    assert restored.get_params() == original.get_params()
    assert restored.n_updates_ == original.n_updates_ == trained
    state = world.rng.bit_generator.state
    w1 = World(seed=2)
    w1.rng.bit_generator.state = state
    w2 = World(seed=2)
    w2.rng.bit_generator.state = state
    for _ in range(100):
        x = w1.context()
        assert np.array_equal(x, w2.context())
        c1 = original.choose(x, w1.arms, w1.Z)
        c2 = restored.choose(x, w2.arms, w2.Z)
        assert (c1.index, c1.propensity) == (c2.index, c2.propensity)
        np.testing.assert_array_equal(c1.scores, c2.scores)
        r = float(w1.rng.random() < 0.5)
        assert r == float(w2.rng.random() < 0.5)
        original.update(x, w1.arms[c1.index], w1.Z[c1.index], r, c1.propensity)
        restored.update(x, w2.arms[c2.index], w2.Z[c2.index], r, c2.propensity)


@cases
def test_learning(case: Case) -> None:
    world = World(seed=4)
    policy = case.factory(3)
    if case.learns == "none":
        # Declared non-learner: training must leave the choice distribution unchanged.
        x = np.r_[1.0, 0.5, -0.5, 0.0, 0.0]
        before = policy.probabilities(x, world.arms, world.Z)
        run(policy, world, 300)
        after = policy.probabilities(x, world.arms, world.Z)
        assert before is not None and after is not None
        np.testing.assert_array_equal(before, after)
        return
    if case.learns == "context_free":
        world.M[:] = 0.0  # one bundle (largest z_0) is the best for every user
    _, got, uniform = run(policy, world, 1500)
    gain = got[750:].mean() - uniform[750:].mean()
    # Best achievable gain over uniform in the same contexts (the oracle's choices).
    oracle = World(seed=4)
    if case.learns == "context_free":
        oracle.M[:] = 0.0
    best = np.mean([oracle.means(oracle.context(), oracle.Z).max() for _ in range(1500)])
    oracle_gain = best - uniform.mean()
    # A learner must capture at least half of the oracle's advantage over uniform in the
    # second half of the run; uniform itself captures 0 (+- 0.01 with 750 rounds), and the
    # policies here reach 0.7-0.95 with these seeds, so 0.5 is a clear margin both ways.
    assert gain > 0.5 * oracle_gain, f"gain {gain:.3f} vs oracle {oracle_gain:.3f}"


@cases
def test_only_offered_arms_are_chosen_in_any_order(case: Case) -> None:
    world = World(seed=5, n_arms=8)
    policy = case.factory(4)
    run(policy, world, 200)
    rng = np.random.default_rng(0)
    x = np.r_[1.0, -0.2, 0.3, 0.0, 0.5]
    for size in (1, 2, 3, 5, 8):
        pick = rng.permutation(8)[:size]
        arms = [world.arms[i] for i in pick]
        Z = world.Z[pick]
        reverse = policy.probabilities(x, arms[::-1], Z[::-1])
        probs = policy.probabilities(x, arms, Z)
        for _ in range(20):
            c = policy.choose(x, arms, Z)
            assert 0 <= c.index < size
            assert c.scores.shape == (size,)
        if probs is not None and reverse is not None:
            assert probs.shape == (size,) and probs.sum() == pytest.approx(1.0, abs=1e-6)
            np.testing.assert_allclose(probs, reverse[::-1], rtol=1e-9, atol=1e-12)


@cases
def test_new_arm_mid_run(case: Case) -> None:
    world = World(seed=6, n_arms=4)
    policy = case.factory(8)
    run(policy, world, 300)
    world.add_best_arm()
    new = len(world.arms) - 1
    chosen, _, _ = run(policy, world, 1200)
    share = float(np.mean(chosen[600:] == new))
    k = len(world.arms)
    if case.new_arm == "learned":
        # The new bundle's click rate is 0.96 for everyone; every learner here picks it in
        # > 75% of the last 600 rounds with these seeds. (Shared-mode TS can only rate a new
        # bundle through its features: in a world where the linear model in vec(x z') is badly
        # misspecified it may ignore it, e.g. World(seed=26). That is the model's limitation,
        # which HybridLinUCB's per-bundle term addresses.)
        assert share > 0.5, f"new best arm chosen in {share:.0%} of the last 600 rounds"
    elif case.new_arm == "immediate":
        assert np.mean(chosen[:100] == new) > 0.5
    else:
        # Fair share 1/5 of 600 rounds: sd ~ 0.016, so +-0.07 is > 4 sd.
        assert abs(share - 1 / k) < 0.07


@cases
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_context_is_refused_cleanly(case: Case, bad: float) -> None:
    """A non-finite context is a ValidationError naming x, raised before any numpy warning and
    without consuming randomness or learning anything."""
    world = World(seed=7, n_arms=4)
    policy, twin = case.factory(9), case.factory(9)
    run(policy, world, 50)
    run(twin, world.__class__(seed=7, n_arms=4), 50)
    x = np.r_[1.0, 0.2, bad, -0.1, 0.4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would become the user's error
        with pytest.raises(ValidationError, match=r"x\[2\]"):
            policy.choose(x, world.arms, world.Z)
        with pytest.raises(ValidationError, match=r"x\[2\]"):
            policy.update(x, world.arms[0], world.Z[0], 1.0, 0.5)
    good = np.r_[1.0, 0.2, 0.3, -0.1, 0.4]
    a, b = policy.choose(good, world.arms, world.Z), twin.choose(good, world.arms, world.Z)
    assert (a.index, a.propensity) == (b.index, b.propensity)
