"""LinUCB against closed-form ridge regression with fresh inverses, forgetting, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.policies.linucb import LinUCB

D, P = 5, 3


def _stream(n: int, n_arms: int, seed: int) -> list[tuple[np.ndarray, str, float]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=D), f"a{int(rng.integers(n_arms))}", float(rng.normal())) for _ in range(n)
    ]


def _naive(
    obs: list[tuple[np.ndarray, float]],
    l2: float,
    weights: list[float] | None = None,
    prior_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with a fresh inverse: returns (A_inv, theta)."""
    A = prior_scale * l2 * np.eye(D)
    b = np.zeros(D)
    for i, (x, r) in enumerate(obs):
        w = 1.0 if weights is None else weights[i]
        A += w * np.outer(x, x)
        b += w * r * x
    A_inv = np.linalg.inv(A)
    return A_inv, A_inv @ b


def _row(pol: LinUCB, arm: str) -> int:
    return pol.arms_.index[arm]


def test_matches_closed_form_ridge_and_scores() -> None:
    stream = _stream(400, 6, seed=1)
    pol = LinUCB(alpha=0.7, l2=2.0, seed=0)
    z = np.zeros(P)
    for x, arm, r in stream:
        pol.update(x, arm, z, r)
    ridge = pol.ridge_
    assert ridge is not None
    arms = sorted({a for _, a, _ in stream})
    x_new = np.random.default_rng(5).normal(size=D)
    expected = []
    for arm in arms:
        A_inv, theta = _naive([(x, r) for x, a, r in stream if a == arm], l2=2.0)
        row = _row(pol, arm)
        np.testing.assert_allclose(ridge.A_inv[row], A_inv, rtol=0, atol=1e-8)
        np.testing.assert_allclose(ridge.theta[row], theta, rtol=0, atol=1e-8)
        expected.append(theta @ x_new + 0.7 * np.sqrt(x_new @ A_inv @ x_new))
    choice = pol.choose(x_new, arms, np.zeros((len(arms), P)))
    np.testing.assert_allclose(choice.scores, expected, rtol=0, atol=1e-8)
    assert choice.index == int(np.argmax(expected))
    np.testing.assert_allclose(
        pol.score_batch(x_new[None, :], arms, np.zeros((len(arms), P)))[0],
        [_naive([(x, r) for x, a, r in stream if a == arm], 2.0)[1] @ x_new for arm in arms],
        atol=1e-8,
    )


def test_scoring_paths_agree_for_any_order_and_subset() -> None:
    """Contiguous slice, span-and-gather and matrix-gather paths give the same scores."""
    pol = LinUCB(alpha=1.0, seed=0)
    z = np.zeros(P)
    for x, arm, r in _stream(600, 40, seed=2):
        pol.update(x, arm, z, r)
    x = np.random.default_rng(9).normal(size=D)
    ids = pol.arms_.ids
    full = pol.choose(x, tuple(ids), np.zeros((len(ids), P))).scores
    by_id = dict(zip(ids, full, strict=True))
    rng = np.random.default_rng(3)
    for subset in (ids[5:25], ids[::-1], [ids[30], ids[2]], list(rng.permutation(ids))[:7]):
        sub_scores = pol.choose(x, subset, np.zeros((len(subset), P))).scores
        np.testing.assert_allclose(sub_scores, [by_id[a] for a in subset], rtol=1e-12)
        probs = pol.probabilities(x, subset, np.zeros((len(subset), P)))
        assert probs[int(np.argmax(sub_scores))] == 1.0


def test_new_arms_tie_and_share_the_choice_uniformly() -> None:
    pol = LinUCB(seed=0)
    x = np.random.default_rng(0).normal(size=D)
    arms = [f"n{i}" for i in range(7)]
    np.testing.assert_allclose(pol.probabilities(x, arms, np.zeros((7, P))), 1 / 7)
    assert pol.arms_.ids == []  # probabilities() creates nothing
    picks = [pol.choose(x, arms, np.zeros((7, P))).index for _ in range(700)]
    counts = np.bincount(picks, minlength=7)
    # Uniform over 7 with n=700: sd of a count ~ 9.3, so 100 +- 40 is a > 4 sigma band.
    assert counts.min() > 60 and counts.max() < 140


def test_epsilon_mixing_distribution() -> None:
    pol = LinUCB(alpha=0.0, epsilon=0.3, seed=0)
    z = np.zeros(P)
    x = np.ones(D)
    pol.update(x, "good", z, 1.0)
    pol.update(x, "bad", z, -1.0)
    arms = ["bad", "good", "new"]
    probs = pol.probabilities(x, arms, np.zeros((3, P)))
    np.testing.assert_allclose(probs, [0.1, 0.8, 0.1])
    choice = pol.choose(x, arms, np.zeros((3, P)))
    assert choice.propensity == pytest.approx(probs[choice.index])


def test_sliding_window_equals_refit_on_last_w() -> None:
    W = 7
    stream = _stream(300, 3, seed=4)
    pol = LinUCB(l2=0.5, window=W, seed=0)
    z = np.zeros(P)
    for t, (x, arm, r) in enumerate(stream):
        pol.update(x, arm, z, r)
        if t % 37 == 0 or t == len(stream) - 1:
            ridge = pol.ridge_
            assert ridge is not None
            for a in pol.arms_.ids:
                last = [(xx, rr) for xx, aa, rr in stream[: t + 1] if aa == a][-W:]
                A_inv, theta = _naive(last, l2=0.5)
                np.testing.assert_allclose(ridge.A_inv[_row(pol, a)], A_inv, atol=1e-9)
                np.testing.assert_allclose(ridge.theta[_row(pol, a)], theta, atol=1e-9)


def test_discount_matches_weighted_ridge_including_prior_restore() -> None:
    g = 0.8  # prior scale falls below 0.5 after 4 updates: several restores below
    stream = [(x, "a", r) for x, _, r in _stream(40, 1, seed=6)]
    pol = LinUCB(l2=1.5, discount=g, seed=0)
    z = np.zeros(P)
    scale = 1.0
    restores = 0
    for t, (x, arm, r) in enumerate(stream):
        pol.update(x, arm, z, r)
        scale *= g
        if scale < 0.5:
            scale, restores = 1.0, restores + 1
        n = t + 1
        weights = [g ** (n - 1 - i) for i in range(n)]
        A_inv, theta = _naive(
            [(xx, rr) for xx, _, rr in stream[:n]], 1.5, weights=weights, prior_scale=scale
        )
        ridge = pol.ridge_
        assert ridge is not None
        assert ridge.scale[0] == pytest.approx(scale)
        np.testing.assert_allclose(ridge.A_inv[0], A_inv, atol=1e-9)
        np.testing.assert_allclose(ridge.theta[0], theta, atol=1e-9)
    assert restores >= 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, "alpha must be >= 0, got -1.0"),
        ({"l2": 0.0}, "l2 must be > 0, got 0.0"),
        ({"epsilon": 1.5}, "epsilon must be in [0.0, 1.0], got 1.5"),
        ({"discount": 1.0}, "discount must be in (0.0, 1.0), got 1.0"),
        ({"window": 0}, "window must be an integer >= 1, got 0"),
        ({"window": 2.5}, "window must be an integer >= 1, got 2.5"),
        ({"discount": 0.9, "window": 5}, "only one of discount and window"),
        ({"seed": "x"}, "seed must be an int, a numpy Generator or None, got 'x'"),
        ({"alpha": True}, "alpha must be >= 0, got True"),
    ],
)
def test_hyperparameter_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        LinUCB(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_dimension_and_value_errors_name_the_field() -> None:
    pol = LinUCB(seed=0)
    pol.choose(np.zeros(D), ["a", "b"], np.zeros((2, P)))
    with pytest.raises(ValidationError, match=r"x must have length 5 \(as when first used\)"):
        pol.choose(np.zeros(D + 1), ["a", "b"], np.zeros((2, P)))
    with pytest.raises(ValidationError, match=r"arm_features must have shape \(len\(arms\)=2"):
        pol.choose(np.zeros(D), ["a", "b"], np.zeros((3, P)))
    with pytest.raises(ValidationError, match="arm_features must have 3 columns"):
        pol.update(np.zeros(D), "a", np.zeros(P + 1), 1.0)
    with pytest.raises(ValidationError, match="x must be a 1-d context vector"):
        pol.choose(np.zeros((1, D)), ["a"], np.zeros((1, P)))
    with pytest.raises(ValidationError, match="arms must contain at least one arm"):
        pol.choose(np.zeros(D), [], np.zeros((0, P)))
    with pytest.raises(ValidationError, match="arms must not contain duplicates, got 'a'"):
        pol.choose(np.zeros(D), ["a", "a"], np.zeros((2, P)))
    bad = np.zeros(D)
    bad[2] = np.nan
    with pytest.raises(ValidationError, match=r"x\[2\] must be finite, got nan"):
        pol.choose(bad, ["a", "b"], np.zeros((2, P)))
    before = pol.get_state()
    with pytest.raises(ValidationError, match=r"x\[2\] must be finite"):
        pol.update(bad, "a", np.zeros(P), 1.0)
    with pytest.raises(ValidationError, match="reward must be a finite number, got inf"):
        pol.update(np.zeros(D), "a", np.zeros(P), float("inf"))
    with pytest.raises(ValidationError, match=r"propensity must be in \(0, 1\], got 0.0"):
        pol.update(np.zeros(D), "a", np.zeros(P), 1.0, propensity=0.0)
    with pytest.raises(ValidationError, match="arm must be a string id, got 3"):
        pol.update(np.zeros(D), 3, np.zeros(P), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="x must be an array of numbers"):
        pol.choose(["a"] * D, ["a"], np.zeros((1, P)))  # type: ignore[arg-type]
    after = pol.get_state()
    for key in ("A_inv", "b", "theta", "n_obs"):
        np.testing.assert_array_equal(before[key], after[key])  # failed updates changed nothing


def test_accepts_lists_and_integer_arrays() -> None:
    pol = LinUCB(seed=0)
    c = pol.choose([1, 2, 3], ("a", "b"), [[0], [1]])  # type: ignore[arg-type]
    pol.update(np.array([1, 2, 3]), "a", np.array([0]), 1)
    assert c.index in (0, 1)
    assert pol.n_updates_ == 1


def test_state_round_trip_through_json_and_bad_state() -> None:
    pol = LinUCB(alpha=0.5, window=4, seed=3)
    z = np.zeros(P)
    for x, arm, r in _stream(50, 4, seed=8):
        pol.update(x, arm, z, r)
    state = pol.get_state()
    plain = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    restored_state = {**json.loads(json.dumps(plain)), **arrays}
    twin = LinUCB(**pol.get_params())
    twin.set_state(restored_state)
    x = np.random.default_rng(1).normal(size=D)
    for _ in range(20):
        a = pol.choose(x, pol.arms_.ids, np.zeros((4, P)))
        b = twin.choose(x, twin.arms_.ids, np.zeros((4, P)))
        assert (a.index, a.propensity) == (b.index, b.propensity)
        np.testing.assert_array_equal(a.scores, b.scores)
        pol.update(x, pol.arms_.ids[a.index], z, 1.0)
        twin.update(x, twin.arms_.ids[b.index], z, 1.0)
    broken = dict(restored_state)
    broken["A_inv"] = broken["A_inv"][:, :2]
    fresh = LinUCB(**pol.get_params())
    with pytest.raises(ValidationError, match=r"state.A_inv must have shape \(4, 5, 5\)"):
        fresh.set_state(broken)
    assert fresh.n_features_ is None and fresh.ridge_ is None  # unchanged by the failure
    missing = {k: v for k, v in restored_state.items() if k != "window_x"}
    with pytest.raises(ValidationError, match=r"state\.window_x is required"):
        fresh.set_state(missing)
