"""Control-group policies: uniform, epsilon-greedy, popularity, fixed rule."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.policies.baselines import EpsilonGreedy, FixedRule, Popularity, UniformRandom

X = np.zeros(2)


def _Z(k: int) -> np.ndarray:
    return np.zeros((k, 2))


def test_uniform_propensity_and_no_learning() -> None:
    pol = UniformRandom(seed=0)
    arms = ["a", "b", "c", "d"]
    c = pol.choose(X, arms, _Z(4))
    assert c.propensity == 0.25
    np.testing.assert_array_equal(c.probabilities, np.full(4, 0.25))
    for _ in range(10):
        pol.update(X, "a", np.zeros(2), 1.0)
    np.testing.assert_array_equal(pol.probabilities(X, arms, _Z(4)), np.full(4, 0.25))
    np.testing.assert_array_equal(pol.score_batch(np.zeros((3, 2)), arms, _Z(4)), 0.0)
    assert pol.get_state()["count"].tolist() == [10, 0, 0, 0]


def test_epsilon_greedy_running_and_discounted_means() -> None:
    pol = EpsilonGreedy(epsilon=0.2, initial_value=0.5, seed=0)
    for r in (1.0, 0.0, 1.0, 1.0):
        pol.update(X, "a", np.zeros(2), r)
    pol.update(X, "b", np.zeros(2), 0.25)
    np.testing.assert_allclose(
        pol.score_batch(X[None], ["a", "b", "new"], _Z(3)), [[0.75, 0.25, 0.5]]
    )
    np.testing.assert_allclose(
        pol.probabilities(X, ["a", "b", "new"], _Z(3)), [0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]
    )
    disc = EpsilonGreedy(discount=0.5, seed=0)
    for r in (1.0, 0.0, 0.0):
        disc.update(X, "a", np.zeros(2), r)
    # weights 0.25, 0.5, 1 for rewards 1, 0, 0
    assert disc.score_batch(X[None], ["a"], _Z(1))[0, 0] == pytest.approx(0.25 / 1.75)


def test_popularity_smoothed_mean_and_total() -> None:
    pol = Popularity(prior_mean=0.1, prior_weight=4.0, seed=0)
    for r in (1.0, 1.0):
        pol.update(X, "hot", np.zeros(2), r)
    for r in (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0):
        pol.update(X, "busy", np.zeros(2), r)
    values = pol.score_batch(X[None], ["hot", "busy", "new"], _Z(3))[0]
    np.testing.assert_allclose(values, [(2 + 0.4) / 6, (1 + 0.4) / 12, 0.1])
    assert pol.choose(X, ["busy", "new", "hot"], _Z(3)).index == 2
    total = Popularity(by="total", seed=0)
    for arm, r in (("hot", 1.0), ("hot", 1.0), ("busy", 1.0), ("busy", 1.0), ("busy", 1.0)):
        total.update(X, arm, np.zeros(2), r)
    c = total.choose(X, ["hot", "busy"], _Z(2))
    assert (c.index, c.propensity) == (1, 1.0)


def test_fixed_rule_ranks_by_column_and_never_learns() -> None:
    Z = np.array([[0.0, 0.1], [0.0, 0.5], [0.0, 0.3]])
    pol = FixedRule(column=1, seed=0)
    assert pol.choose(X, ["a", "b", "c"], Z).index == 1
    for _ in range(20):
        pol.update(X, "a", Z[0], 1.0)
    assert pol.choose(X, ["a", "b", "c"], Z).index == 1
    assert FixedRule(column=1, descending=False).choose(X, ["a", "b", "c"], Z).index == 0
    first = FixedRule()
    assert first.choose(X, ["c", "a", "b"], Z).index == 0
    mixed = FixedRule(column=0, epsilon=0.3)
    np.testing.assert_allclose(mixed.probabilities(X, ["a", "b", "c"], Z), 1 / 3)  # 3-way tie
    with pytest.raises(ValidationError, match="must have more than column=1 columns"):
        FixedRule(column=1).choose(X, ["a"], np.zeros((1, 1)))
    bad = Z.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValidationError, match=r"arm_features\[2, 1\] must be finite"):
        pol.choose(X, ["a", "b", "c"], bad)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (EpsilonGreedy, {"epsilon": 1.1}, "epsilon must be in [0.0, 1.0], got 1.1"),
        (EpsilonGreedy, {"initial_value": float("nan")}, "initial_value must be a finite number"),
        (EpsilonGreedy, {"discount": 1.5}, "discount must be in (0.0, 1.0), got 1.5"),
        (Popularity, {"prior_weight": -1.0}, "prior_weight must be >= 0, got -1.0"),
        (Popularity, {"by": "clicks"}, "by must be one of ['mean', 'total'], got 'clicks'"),
        (FixedRule, {"column": -1}, "column must be an integer >= 0, got -1"),
        # a column name is resolved later (tests/test_fixed_rule_names.py); a blank one is not one
        (FixedRule, {"column": ""}, "column must be a feature name or an index, got ''"),
        (FixedRule, {"column": 1.5}, "column must be an integer >= 0, got 1.5"),
        (FixedRule, {"descending": "yes"}, "descending must be True or False, got 'yes'"),
        (UniformRandom, {"seed": -3}, "seed must be >= 0, got -3"),
    ],
)
def test_hyperparameter_validation(cls: type, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert message in str(info.value)


def test_state_validation() -> None:
    pol = Popularity(seed=0)
    pol.update(X, "a", np.zeros(2), 1.0)
    state = pol.get_state()
    bad = {**state, "count": np.array([-1])}
    fresh = Popularity(seed=0)
    with pytest.raises(ValidationError, match=r"state\.count must be >= 0"):
        fresh.set_state(bad)
    with pytest.raises(ValidationError, match=r"state\.arms must be a list of arm ids"):
        fresh.set_state({**state, "arms": "a"})
    with pytest.raises(ValidationError, match=r"state\.rng\.bit_generator must be one of"):
        fresh.set_state({**state, "rng": {"bit_generator": "Nope"}})
    assert fresh.arms_.ids == [] and fresh.n_updates_ == 0
    fresh.set_state(state)
    assert fresh.score_batch(X[None], ["a"], _Z(1))[0, 0] == pytest.approx(0.5)
