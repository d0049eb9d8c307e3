"""Cross-fitted reward models for DM / DR."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.evaluation import RidgeRewardModel, cross_fit_rewards, dm, dr


def _linear_world(n: int, seed: int, interaction: bool = False) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    K, d = 4, 3
    X = g.normal(size=(n, d))
    a = g.integers(K, size=n)
    beta = np.array([0.5, -0.3, 0.2])
    offsets = np.array([0.0, 0.4, -0.2, 0.1])
    theta = g.normal(size=(K, d))
    if interaction:
        truth = np.einsum("nd,kd->nk", X, theta)
    else:
        truth = (X @ beta)[:, None] + offsets[None, :]
    r = truth[np.arange(n), a] + 0.1 * g.normal(size=n)
    return {"X": X, "a": a, "r": r, "truth": truth}


def test_ridge_matches_the_closed_form() -> None:
    g = np.random.default_rng(0)
    X = g.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0 + g.normal(size=200)
    model = RidgeRewardModel(alpha=2.0).fit(X, y)
    # Unpenalised intercept: solve on centred data.
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    coef = np.linalg.solve(Xc.T @ Xc + 2.0 * np.eye(4), Xc.T @ yc)
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-10)
    np.testing.assert_allclose(model.predict(X), Xc @ coef + y.mean(), rtol=1e-10)


def test_ridge_agrees_with_scikit_learn() -> None:
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    g = np.random.default_rng(1)
    X = g.normal(size=(100, 3))
    y = g.normal(size=100)
    ours = RidgeRewardModel(alpha=0.7).fit(X, y)
    theirs = sklearn_linear.Ridge(alpha=0.7).fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-8)
    assert ours.intercept_ == pytest.approx(theirs.intercept_, rel=1e-8)


def test_ridge_hyperparameters_and_input_checks() -> None:
    with pytest.raises(ConfigError, match=r"alpha must be > 0, got -1\.0"):
        RidgeRewardModel(alpha=-1.0)
    model = RidgeRewardModel()
    with pytest.raises(ValidationError, match=r"X \(shape \(3, 2\)\) and y \(shape \(4,\)\)"):
        model.fit(np.zeros((3, 2)), np.zeros(4))
    model.fit(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValidationError, match="must have 2 columns"):
        model.predict(np.zeros((1, 3)))


def test_cross_fit_recovers_a_linear_reward() -> None:
    w = _linear_world(3000, seed=2)
    q = cross_fit_rewards(context=w["X"], action=w["a"], reward=w["r"], n_actions=4, seed=0)
    assert q.shape == (3000, 4)
    # Noise sd 0.1 against a signal sd ~0.6: a correct model's error is tiny by comparison.
    assert np.sqrt(np.mean((q - w["truth"]) ** 2)) < 0.03


def test_cross_fit_is_out_of_fold() -> None:
    w = _linear_world(400, seed=3)
    args = {"context": w["X"], "action": w["a"], "n_actions": 4, "n_folds": 4, "seed": 5}
    q1 = cross_fit_rewards(reward=w["r"], **args)
    r2 = w["r"].copy()
    r2[17] += 100.0
    q2 = cross_fit_rewards(reward=r2, **args)
    # Row 17's own prediction never saw its reward; rows of other folds did.
    np.testing.assert_array_equal(q1[17], q2[17])
    assert np.mean(np.abs(q1 - q2).max(axis=1) > 1e-6) > 0.5
    # Same seed, same folds, same predictions.
    np.testing.assert_array_equal(q1, cross_fit_rewards(reward=w["r"], **args))


def test_per_action_models_capture_interactions_a_pooled_linear_model_cannot() -> None:
    w = _linear_world(3000, seed=4, interaction=True)
    args = {"context": w["X"], "action": w["a"], "reward": w["r"], "n_actions": 4, "seed": 0}
    pooled = cross_fit_rewards(**args)
    separate = cross_fit_rewards(**args, per_action=True)
    err_pooled = np.sqrt(np.mean((pooled - w["truth"]) ** 2))
    err_separate = np.sqrt(np.mean((separate - w["truth"]) ** 2))
    assert err_separate < 0.05 < 0.5 < err_pooled


def test_action_context_replaces_the_one_hot_encoding() -> None:
    w = _linear_world(2000, seed=5)
    # The offsets are an exact linear function of this one action feature.
    action_context = np.array([[0.0], [0.4], [-0.2], [0.1]])
    q = cross_fit_rewards(
        context=w["X"],
        action=w["a"],
        reward=w["r"],
        n_actions=4,
        action_context=action_context,
        seed=0,
    )
    assert np.sqrt(np.mean((q - w["truth"]) ** 2)) < 0.03


def test_position_enters_the_features() -> None:
    g = np.random.default_rng(6)
    n = 2000
    X = g.normal(size=(n, 2))
    a = g.integers(3, size=n)
    pos = g.integers(3, size=n)
    r = 0.3 * pos + 0.1 * g.normal(size=n)
    q = cross_fit_rewards(context=X, action=a, reward=r, n_actions=3, position=pos, seed=0)
    for p in range(3):
        assert q[pos == p].mean() == pytest.approx(0.3 * p, abs=0.02)


def test_logistic_regression_classifier_gives_probabilities_for_dr() -> None:
    linear = pytest.importorskip("sklearn.linear_model")
    g = np.random.default_rng(7)
    n, K = 3000, 3
    X = g.normal(size=(n, 2))
    a = g.integers(K, size=n)
    logits = X[:, :1] - 1.0 + np.array([0.0, 1.0, -1.0])[None, :]
    p_true = 1.0 / (1.0 + np.exp(-logits))
    r = (g.random(n) < p_true[np.arange(n), a]).astype(float)
    q = cross_fit_rewards(
        context=X, action=a, reward=r, n_actions=K, model=linear.LogisticRegression(), seed=0
    )
    assert q.min() >= 0.0 and q.max() <= 1.0
    # The model is well specified, so its probabilities track the truth closely.
    assert np.sqrt(np.mean((q - p_true) ** 2)) < 0.05
    dist = np.full((n, K), 1.0 / K)
    truth = float(p_true.mean())
    est = dr(reward=r, action=a, pscore=np.full(n, 1.0 / K), action_dist=dist, estimated_rewards=q)
    assert est.ci_low <= truth <= est.ci_high
    assert dm(action_dist=dist, estimated_rewards=q).value == pytest.approx(truth, abs=0.02)


def test_classifier_with_one_class_in_a_fold_and_non_binary_rewards() -> None:
    linear = pytest.importorskip("sklearn.linear_model")
    X = np.random.default_rng(8).normal(size=(50, 2))
    a = np.arange(50) % 2
    q = cross_fit_rewards(
        context=X,
        action=a,
        reward=np.zeros(50),
        n_actions=2,
        model=linear.LogisticRegression(),
        seed=0,
    )
    np.testing.assert_array_equal(q, 0.0)  # all-zero clicks: the model predicts 0
    with pytest.raises(ValidationError, match=r"classifier.*rewards in \{0, 1\}.*rows \(index 3"):
        r = np.zeros(50)
        r[3] = 0.5
        cross_fit_rewards(
            context=X, action=a, reward=r, n_actions=2, model=linear.LogisticRegression()
        )


def test_cross_fit_input_checks() -> None:
    X = np.zeros((10, 2))
    a = np.zeros(10, dtype=int)
    r = np.zeros(10)
    with pytest.raises(ConfigError, match=r"n_folds must be an int in \[2, n=10\], got 1"):
        cross_fit_rewards(context=X, action=a, reward=r, n_actions=2, n_folds=1)
    with pytest.raises(ValidationError, match=r"action must be in \[0, 2\)"):
        cross_fit_rewards(context=X, action=a + 2, reward=r, n_actions=2)
    with pytest.raises(
        ValidationError, match=r"context \(shape \(10, 2\)\).*reward \(shape \(9,\)\)"
    ):
        cross_fit_rewards(context=X, action=a, reward=r[:9], n_actions=2)
    with pytest.raises(ValidationError, match=r"action_context must have shape \(n_actions=2, p\)"):
        cross_fit_rewards(
            context=X, action=a, reward=r, n_actions=2, action_context=np.zeros((3, 1))
        )
    with pytest.raises(ConfigError, match="must have fit"):
        cross_fit_rewards(context=X, action=a, reward=r, n_actions=2, model=object())
