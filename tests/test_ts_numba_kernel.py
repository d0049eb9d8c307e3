"""The optional compiled propensity kernel (numba) agrees with the numpy implementation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.special import ndtr

from bandit_engine.policies import thompson
from bandit_engine.policies._kernels import kernels
from bandit_engine.policies._ts_propensity import prob_max_normal_numpy
from bandit_engine.policies.thompson import LinearTS

kernel_mod = pytest.importorskip("bandit_engine.policies._ts_numba")


@pytest.fixture(autouse=True)
def _kernel_enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests are about the kernel: load it even if the caller set the opt-out variable."""
    monkeypatch.delenv("BANDIT_ENGINE_NO_NUMBA", raising=False)
    kernels.reset()
    yield
    kernels.reset()  # the next user decides afresh (from the environment)


def _kernel(mu: np.ndarray, sd: np.ndarray, a: int) -> float:
    kernels.load()
    assert kernels.compiled, "numba is installed, so the kernel must load"
    return kernels.prob_max_normal(mu, sd, a)


def test_phi_table_accuracy() -> None:
    # The documented budget of the Taylor table: 1e-11 relative for x >= -6, 5e-10 to -10,
    # 1e-7 to -20 (measured maxima are about half of each), exact 0 / 1 outside [-40, 8.5].
    table = kernel_mod.PHI_TABLE
    for lo, hi, tol in ((-6.0, 8.5, 1e-11), (-10.0, -6.0, 5e-10), (-20.0, -10.0, 1e-7)):
        xs = np.linspace(lo, hi, 4001)
        got = np.array([kernel_mod.phi_cdf(x, table) for x in xs])
        assert np.max(np.abs(got - ndtr(xs)) / ndtr(xs)) < tol, (lo, hi)
    assert kernel_mod.phi_cdf(8.6, table) == 1.0
    assert kernel_mod.phi_cdf(-41.0, table) == 0.0


def test_kernel_agrees_with_numpy_on_random_states() -> None:
    # Same rule; the kernel also skips, per node, factors >= 1 - 4.0e-11 and uses the table
    # (<= 1e-11 where it matters), so 50 competitors move the result by at most ~2e-9
    # relative. 1e-8 leaves a margin; a kernel following a different rule (range, panels,
    # breakpoints) would differ by 1e-7 or more on some of these states.
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(40):
        k = int(rng.integers(3, 60))
        mu = rng.normal(0.0, rng.choice([0.2, 1.0, 3.0]), k)
        sd = np.exp(rng.normal(-1.0, rng.choice([0.1, 0.6, 1.2]), k))
        for a in (int(mu.argmax()), int(rng.integers(k))):
            want = prob_max_normal_numpy(mu, sd, a)
            got = _kernel(mu, sd, a)
            worst = max(worst, abs(got - want) / max(want, 1e-300))
            assert abs(got - want) <= 1e-8 * want + 1e-15, (mu, sd, a)
    assert worst > 0.0  # the two really are different code


def test_environment_variable_selects_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels.reset()
    monkeypatch.setenv("BANDIT_ENGINE_NO_NUMBA", "1")
    mu, sd = np.array([0.0, 0.2, -0.1, 0.4]), np.array([1.0, 0.7, 1.3, 0.2])
    assert thompson.prob_max_normal(mu, sd, 1) == prob_max_normal_numpy(mu, sd, 1)
    assert kernels.compiled is False


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_policy_propensities_match_between_implementations(
    monkeypatch: pytest.MonkeyPatch, epsilon: float
) -> None:
    # Same seed, same decisions (the choice never depends on the propensity), propensities equal
    # to the kernel's tolerance; epsilon = 0 takes the fused sampling + propensity call.
    rng = np.random.default_rng(0)
    arms = [f"a{i}" for i in range(12)]
    Z = np.zeros((12, 1))
    X = rng.normal(size=(300, 5))
    runs = []
    for flag in (None, "1"):
        kernels.reset()
        if flag:
            monkeypatch.setenv("BANDIT_ENGINE_NO_NUMBA", flag)
        pol = LinearTS(v=0.3, epsilon=epsilon, seed=1)
        out = []
        for t, x in enumerate(X):
            c = pol.choose(x, arms, Z)
            out.append((c.index, c.propensity))
            pol.update(x, arms[c.index], Z[c.index], float((t * 7 + c.index) % 5 == 0))
        runs.append(out)
    assert [i for i, _ in runs[0]] == [i for i, _ in runs[1]]
    np.testing.assert_allclose([p for _, p in runs[0]], [p for _, p in runs[1]], rtol=1e-8)


def test_sample_scores_matches_numpy_arithmetic() -> None:
    # Bit for bit: sd = max(v sqrt(q), 1e-12 max(1, max|m|)), scores = z sd + m, first argmax;
    # a zero context (q = 0) exercises the floor, a NaN the "argmax lands on NaN" rule.
    rng = np.random.default_rng(9)
    for q_scale in (1.0, 0.0):
        m = rng.normal(size=40) * 3
        q = rng.random(40) * q_scale
        z = rng.standard_normal(40)
        sd = np.sqrt(q) * 0.7
        np.maximum(sd, 1e-12 * max(1.0, float(np.abs(m).max())), out=sd)
        want = z * sd + m
        q2, z2 = q.copy(), z.copy()
        index = kernel_mod.sample_scores(m, q2, z2, 0.7)
        np.testing.assert_array_equal(q2, sd)
        np.testing.assert_array_equal(z2, want)
        assert index == int(want.argmax())
    m = np.array([0.0, np.nan, 5.0, np.nan])
    assert kernel_mod.sample_scores(m, np.ones(4), np.zeros(4), 1.0) == 1
