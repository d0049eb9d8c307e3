"""Differentially private LinUCB (``dp_linucb``): the mechanism's noise, its limit, its inputs.

The protocol itself (propensities, save/load, masks, new bundles) is in the conformance suite.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from bandit_engine.errors import ConfigError
from bandit_engine.policies import LinUCB, make_policy, policy_from_dict, policy_to_dict
from bandit_engine.policies.private_linucb import (
    PrivateLinUCB,
    gaussian_noise_sd,
    node_sensitivity,
    noise_shift,
    tree_levels,
    zcdp_rho,
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dp_epsilon", 0.0),
        ("dp_epsilon", -1.0),
        ("dp_epsilon", float("nan")),
        ("dp_delta", 0.0),
        ("dp_delta", 1.0),
        ("dp_delta", 1.5),
        ("horizon", 0),
        ("x_bound", 0.0),
        ("reward_bound", -1.0),
        ("batch", 0),
        ("alpha", "auto"),
        ("failure", 1.0),
    ],
)
def test_bad_hyperparameters_name_the_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        make_policy("dp_linucb", **{field: value})
    assert info.value.field == field
    assert field in str(info.value) and repr(value) in str(info.value)


def test_batch_larger_than_horizon_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"batch must be <= horizon"):
        PrivateLinUCB(horizon=10, batch=11)


def test_noise_sd_is_the_gaussian_mechanism_calibration() -> None:
    # The formula, written out independently of the module's helpers.
    eps, delta, horizon, batch, L, B = 4.0, 1e-6, 50_000, 100, 2.0, 3.0
    m = math.ceil(horizon / batch).bit_length()  # 500 leaves -> 9 levels
    assert m == tree_levels(horizon, batch) == 9
    sens = L * math.sqrt(2 * L**2 + 4 * B**2)
    assert node_sensitivity(L, B) == pytest.approx(sens)
    rho = (math.sqrt(math.log(1 / delta) + eps) - math.sqrt(math.log(1 / delta))) ** 2
    sigma = math.sqrt(m) * sens / math.sqrt(2 * rho)
    assert gaussian_noise_sd(eps, delta, m, L, B) == pytest.approx(sigma, rel=1e-12)
    # and that sigma spends exactly the budget: m nodes of sensitivity `sens` under N(0, s^2)
    # is rho-zCDP with rho = m sens^2 / (2 s^2), which converts to rho + 2 sqrt(rho ln 1/delta)
    implied = m * sens**2 / (2 * sigma**2)
    assert implied == pytest.approx(zcdp_rho(eps, delta))
    assert implied + 2 * math.sqrt(implied * math.log(1 / delta)) == pytest.approx(eps)


def test_drawn_noise_has_the_stated_scale_and_sums_over_the_dyadic_nodes() -> None:
    policy = PrivateLinUCB(dp_epsilon=2.0, horizon=1000, batch=10, x_bound=1.5, seed=3)
    assert policy.noise_sd == pytest.approx(gaussian_noise_sd(2.0, 1e-6, 7, 1.5, 1.0))
    d = 4
    x = np.ones(d) * 0.5
    for t in range(60):  # 6 leaves released
        policy.update(x, f"a{t % 2}", np.zeros(1), 1.0)
    assert policy.epoch == 6
    # released = exact sums + the noise of nodes (level 2, index 0) and (level 1, index 2)
    gram, xr = policy.released(0)
    n1, v1 = policy.node_noise(2, 0, 0)
    n2, v2 = policy.node_noise(1, 2, 0)
    np.testing.assert_allclose(gram, 30 * np.outer(x, x) + n1 + n2, atol=1e-9)
    np.testing.assert_allclose(xr, 30 * x + v1 + v2, atol=1e-9)
    # Every node's noise entries are N(0, sigma^2): 400 nodes x 14 independent entries; the
    # sample sd of 5,600 normals is within 3% of sigma with probability > 0.999 (its relative
    # sd is 1/sqrt(2 n) = 0.95%, so 3% is more than 3 sd).
    draws = []
    for index in range(400):
        mat, vec = policy.node_noise(0, index, 1)
        np.testing.assert_array_equal(mat, mat.T)  # symmetric
        draws.append(np.r_[mat[np.triu_indices(d)], vec])
    sd = float(np.std(np.concatenate(draws)))
    assert sd == pytest.approx(policy.noise_sd, rel=0.03)
    # distinct nodes and bundles get independent noise; the same node the same noise
    assert not np.allclose(policy.node_noise(0, 1, 0)[0], policy.node_noise(0, 1, 1)[0])
    np.testing.assert_array_equal(policy.node_noise(3, 5, 2)[1], policy.node_noise(3, 5, 2)[1])
    assert policy.shift_ == pytest.approx(2 * noise_shift(policy.noise_sd, 7, d, 100, 0.05))


def _world(seed: int) -> tuple[np.random.Generator, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(5, 4)) * 0.4
    return rng, theta, [f"b{i}" for i in range(5)]


def test_epsilon_to_infinity_recovers_linucb_choices() -> None:
    """No noise, no shift, one record per leaf: the same choices and propensities as LinUCB with
    the same alpha, l2 and seed, round after round (tie-breaking draws included).

    ``dp_epsilon = 1e40`` puts the noise sd near 1e-17, below the relative tie tolerance (1e-12)
    of the argmax: at 1e30 (sd ~1e-12) the per-bundle noise already broke the exact ties of
    fresh bundles that LinUCB keeps."""
    rng, theta, arms = _world(1)
    private = PrivateLinUCB(
        dp_epsilon=1e40, batch=1, horizon=10_000, alpha=0.3, x_bound=10.0, reward_bound=10.0, seed=7
    )
    plain = LinUCB(alpha=0.3, l2=1.0, seed=7)
    z = np.zeros((5, 1))
    same = 0
    for _ in range(600):
        x = np.r_[1.0, rng.normal(size=3) * 0.5]
        a, b = private.choose(x, arms, z), plain.choose(x, arms, z)
        assert (a.index, a.propensity) == (b.index, b.propensity)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-9, atol=1e-9)
        same += 1
        r = float(theta[a.index] @ x + rng.normal() * 0.1)
        private.update(x, arms[a.index], z[a.index], r)
        plain.update(x, arms[b.index], z[b.index], r)
    assert same == 600


def test_small_epsilon_changes_choices_and_large_noise_is_visible() -> None:
    """The converse: at epsilon 0.5 the released statistics are far from the exact ones."""
    policy = PrivateLinUCB(dp_epsilon=0.5, batch=1, horizon=1000, seed=2)
    for _ in range(8):
        policy.update(np.ones(3) * 0.3, "a", np.zeros(1), 1.0)
    gram, _ = policy.released(0)
    assert np.abs(gram - policy.gram_[0]).max() > 10 * np.abs(policy.gram_[0]).max()


def test_contexts_and_rewards_are_clipped_to_their_bounds() -> None:
    a = PrivateLinUCB(x_bound=1.0, reward_bound=1.0, batch=1, horizon=100, seed=0)
    b = PrivateLinUCB(x_bound=1.0, reward_bound=1.0, batch=1, horizon=100, seed=0)
    x = np.array([3.0, 4.0])  # norm 5, clipped to norm 1
    a.update(x, "k", np.zeros(1), 25.0)  # reward clipped to 1
    b.update(x / 5.0, "k", np.zeros(1), 1.0)
    np.testing.assert_allclose(a.gram_, b.gram_)
    np.testing.assert_allclose(a.xr_, b.xr_)
    np.testing.assert_allclose(a.gram_[0], np.outer(x, x) / 25.0)


def test_learning_stops_at_the_horizon_with_a_warning() -> None:
    policy = PrivateLinUCB(horizon=5, batch=5, seed=0)
    for _ in range(5):
        policy.update(np.ones(2) * 0.5, "a", np.zeros(1), 1.0)
    before = policy.gram_.copy()
    with pytest.warns(RuntimeWarning, match="horizon of 5"):
        policy.update(np.ones(2) * 0.5, "a", np.zeros(1), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not per record
        policy.update(np.ones(2) * 0.5, "a", np.zeros(1), 1.0)
    assert policy.n_over_horizon_ == 2 and policy.n_updates_ == 5
    np.testing.assert_array_equal(policy.gram_, before)


def test_privacy_parameters_and_pending_leaf_survive_save_and_load() -> None:
    policy = PrivateLinUCB(dp_epsilon=4.0, dp_delta=1e-7, horizon=5000, batch=7, seed=5)
    x = np.array([0.2, 0.1, 0.3])
    for t in range(10):  # one leaf released, three records pending
        policy.update(x, f"a{t % 3}", np.zeros(2), 0.5)
    data = policy_to_dict(policy)
    assert data["params"]["dp_epsilon"] == 4.0
    assert data["params"]["dp_delta"] == 1e-7
    assert data["params"]["horizon"] == 5000
    loaded = policy_from_dict(data)
    arms, z = ["a0", "a1", "a2", "new"], np.zeros((4, 2))
    c1, c2 = policy.choose(x, arms, z), loaded.choose(x, arms, z)
    np.testing.assert_array_equal(c1.scores, c2.scores)
    for t in range(10):  # the pending leaf completes identically
        policy.update(x, f"a{t % 3}", np.zeros(2), 1.0)
        loaded.update(x, f"a{t % 3}", np.zeros(2), 1.0)
    np.testing.assert_array_equal(
        policy.choose(x, arms, z).scores, loaded.choose(x, arms, z).scores
    )
