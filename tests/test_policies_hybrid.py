"""Hybrid LinUCB against Li et al. (2010) Algorithm 2 with fresh inverses; item cold start."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.policies.hybrid import HybridLinUCB

D, P = 3, 2
K = D * P


class NaiveHybrid:
    """Algorithm 2 of Li et al. (2010) as printed, with explicit inverses at every step."""

    def __init__(self, alpha: float, l2: float) -> None:
        self.alpha, self.l2 = alpha, l2
        self.A0, self.b0 = l2 * np.eye(K), np.zeros(K)
        self.A: dict[str, np.ndarray] = {}
        self.B: dict[str, np.ndarray] = {}
        self.b: dict[str, np.ndarray] = {}

    def _arm(self, a: str) -> None:
        if a not in self.A:
            self.A[a], self.B[a], self.b[a] = self.l2 * np.eye(D), np.zeros((D, K)), np.zeros(D)

    def scores(self, x: np.ndarray, arms: list[str], Z: np.ndarray) -> np.ndarray:
        A0i = np.linalg.inv(self.A0)
        beta = A0i @ self.b0
        out = []
        for a, zrow in zip(arms, Z, strict=True):
            self._arm(a)
            z = np.outer(x, zrow).ravel()
            Ai = np.linalg.inv(self.A[a])
            B = self.B[a]
            theta = Ai @ (self.b[a] - B @ beta)
            s = (
                z @ A0i @ z
                - 2 * z @ A0i @ B.T @ Ai @ x
                + x @ Ai @ x
                + x @ Ai @ B @ A0i @ B.T @ Ai @ x
            )
            out.append(z @ beta + x @ theta + self.alpha * np.sqrt(s))
        return np.array(out)

    def update(self, x: np.ndarray, a: str, zrow: np.ndarray, r: float) -> None:
        self._arm(a)
        z = np.outer(x, zrow).ravel()
        Ai = np.linalg.inv(self.A[a])
        self.A0 += self.B[a].T @ Ai @ self.B[a]
        self.b0 += self.B[a].T @ Ai @ self.b[a]
        self.A[a] += np.outer(x, x)
        self.B[a] += np.outer(x, z)
        self.b[a] += r * x
        Ai = np.linalg.inv(self.A[a])
        self.A0 += np.outer(z, z) - self.B[a].T @ Ai @ self.B[a]
        self.b0 += r * z - self.B[a].T @ Ai @ self.b[a]


def test_matches_algorithm_2_with_fresh_inverses() -> None:
    rng = np.random.default_rng(0)
    arms = [f"a{i}" for i in range(4)]
    Z = rng.normal(size=(4, P))
    pol = HybridLinUCB(alpha=0.8, l2=1.5, seed=0)
    naive = NaiveHybrid(alpha=0.8, l2=1.5)
    for t in range(200):
        x = rng.normal(size=D)
        i = int(rng.integers(4))
        r = float(rng.normal())
        pol.update(x, arms[i], Z[i], r)
        naive.update(x, arms[i], Z[i], r)
        if t % 50 == 49:
            x_new = rng.normal(size=D)
            np.testing.assert_allclose(
                pol.choose(x_new, arms, Z).scores, naive.scores(x_new, arms, Z), atol=1e-8
            )
    np.testing.assert_allclose(pol.A0_inv_, np.linalg.inv(naive.A0), atol=1e-10)
    np.testing.assert_allclose(pol.beta_, np.linalg.solve(naive.A0, naive.b0), atol=1e-8)
    # Unknown arms and arbitrary order go through the gather path and the spare prior row.
    order = ["new", "a2", "a0"]
    Zo = np.vstack([rng.normal(size=P), Z[2], Z[0]])
    x_new = rng.normal(size=D)
    expected = naive.scores(x_new, order, Zo)
    probs = pol.probabilities(x_new, order, Zo)
    assert probs[int(np.argmax(expected))] == 1.0
    assert "new" not in pol.arms_.index
    np.testing.assert_allclose(pol.choose(x_new, order, Zo).scores, expected, atol=1e-8)


def test_score_batch_is_the_estimated_mean() -> None:
    rng = np.random.default_rng(1)
    arms = ["a", "b", "c"]
    Z = rng.normal(size=(3, P))
    pol = HybridLinUCB(alpha=0.0, seed=0)  # alpha = 0: the score is the mean
    for _ in range(60):
        x = rng.normal(size=D)
        i = int(rng.integers(3))
        pol.update(x, arms[i], Z[i], float(rng.normal()))
    X = rng.normal(size=(4, D))
    batch = pol.score_batch(X, arms, Z)
    for n in range(4):
        np.testing.assert_allclose(batch[n], pol.choose(X[n], arms, Z).scores, atol=1e-10)


def test_new_bundle_resembling_the_best_ranks_above_one_resembling_the_worst() -> None:
    # Reward depends on the bundle's first feature only (through the user's first feature), so
    # the shared part can transfer it to bundles it has never seen.
    rng = np.random.default_rng(2)
    n_arms = 8
    Z = np.column_stack([np.linspace(-1, 1, n_arms), rng.normal(size=n_arms)])
    arms = [f"b{i}" for i in range(n_arms)]
    pol = HybridLinUCB(alpha=0.5, seed=0)
    for _ in range(600):
        x = np.r_[1.0, rng.normal(size=D - 1)]
        i = int(rng.integers(n_arms))
        pol.update(x, arms[i], Z[i], float(Z[i, 0] + 0.3 * rng.normal()))
    new_good = np.array([[0.95, 0.0]])
    new_bad = np.array([[-0.95, 0.0]])
    x = np.r_[1.0, np.zeros(D - 1)]
    both = np.vstack([new_good, new_bad])
    means = pol.score_batch(x[None, :], ["new-good", "new-bad"], both)[0]
    # True means are +0.95 and -0.95; a margin of 1.0 leaves room for estimation error.
    assert means[0] - means[1] > 1.0
    choice = pol.choose(x, ["new-bad", "new-good"], both[::-1])
    assert choice.index == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.5}, "alpha must be >= 0, got -0.5"),
        ({"l2": -1}, "l2 must be > 0, got -1"),
        ({"epsilon": 2}, "epsilon must be in [0.0, 1.0], got 2"),
    ],
)
def test_hyperparameter_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        HybridLinUCB(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_input_errors() -> None:
    pol = HybridLinUCB(seed=0)
    with pytest.raises(ValidationError, match="must have >= 1 column for the shared part"):
        pol.choose(np.ones(D), ["a"], np.zeros((1, 0)))
    pol.choose(np.ones(D), ["a"], np.zeros((1, P)))
    with pytest.raises(ValidationError, match="arm_features must have 2 columns"):
        pol.update(np.ones(D), "a", np.zeros(P + 1), 1.0)
    z = np.zeros(P)
    z[0] = np.nan
    with pytest.raises(ValidationError, match=r"arm_features\[0\] must be finite"):
        pol.update(np.ones(D), "a", z, 1.0)
    assert pol.n_updates_ == 0
