"""The range, pruning and panel logic of ``prob_max_normal`` (the fast Thompson propensity).

``tests/test_policies_thompson.py`` checks its accuracy on hand-picked states; these tests check
the pieces that make it fast: the log-concave tail bound, the widening of a range guessed too
small, the dropping of competitors that cannot matter, and the two quadrature paths (fixed grid,
and refined breakpoints around narrow competitors), in the numpy implementation and in the one
``prob_max_normal`` dispatches to.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from conftest import prob_max_reference
from scipy import integrate
from scipy.special import ndtr

from bandit_engine.policies import _ts_propensity as propensity
from bandit_engine.policies._ts_propensity import prob_max_normal_numpy
from bandit_engine.policies.thompson import prob_max_normal

# The numpy implementation, and prob_max_normal as shipped (the compiled kernel when numba is
# installed, else numpy again). Tests that spy on internals use the numpy one.
IMPLEMENTATIONS = pytest.mark.parametrize(
    "impl", [prob_max_normal_numpy, prob_max_normal], ids=["numpy", "default"]
)


def _count_passes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the panel range of every quadrature pass."""
    calls: list[tuple[int, int]] = []
    original = propensity._integrate

    def spy(u: np.ndarray, r: np.ndarray, p0: int, p1: int) -> object:
        calls.append((p0, p1))
        return original(u, r, p0, p1)

    monkeypatch.setattr(propensity, "_integrate", spy)
    return calls


def _count_ndtr_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many competitor rows each ``Phi`` evaluation covers."""
    rows: list[int] = []
    original = propensity.ndtr

    def spy(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        rows.append(x.shape[0])
        return original(x, out=out)

    monkeypatch.setattr(propensity, "ndtr", spy)
    return rows


@pytest.mark.parametrize(
    ("us", "rs"),
    [
        ([0.0] * 20, [1.0] * 20),  # symmetric: a sharp rise of the competitors' maximum
        ([-1.0, 0.5, 2.0], [0.7, 1.3, 2.0]),
        ([3.0, 3.2, 2.5, 4.0], [0.6, 0.6, 0.9, 1.5]),  # a long shot: mass far up
    ],
)
def test_tail_bound_exceeds_the_true_tail(us: list[float], rs: list[float]) -> None:
    # g = phi * prod Phi_b is log-concave, so the exponential through two neighbouring values
    # bounds it beyond them; check against the integral of the true tail at many cut points.
    u, r = np.array(us), np.array(rs)

    def g(z: float) -> float:
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * float(np.prod(ndtr((z - u) / r)))

    gap = 0.2
    for z in np.linspace(-6.0, 8.0, 29):
        for side in (-1.0, 1.0):
            edge, inner = z, z - side * gap
            bound, rate = propensity._tail(g(edge), g(inner), gap)
            lo, hi = (-np.inf, edge) if side < 0 else (edge, np.inf)
            true = integrate.quad(g, lo, hi, epsabs=0.0, epsrel=1e-10, limit=200)[0]
            if math.isfinite(bound):
                # The bound may only be loose, never short (1e-12 relative for quad's rounding).
                assert true <= bound * (1 + 1e-12) + 1e-300
                assert rate > 0
            else:
                # Infinite only where g does not decrease outwards, i.e. the mode lies beyond.
                assert g(inner) <= g(edge)


def test_long_shot_widens_the_range_upwards(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arm 0 is 6-7 sds below four competitors: its winning mass lies around z ~ 7-8, above the
    # starting range [.., 7], so the upper tail bound fails and the range must grow.
    mu = np.array([0.0, 6.0, 6.5, 5.5, 7.0])
    sd = np.array([1.0, 0.8, 1.0, 0.9, 1.1])
    calls = _count_passes(monkeypatch)
    got = prob_max_normal_numpy(mu, sd, 0)
    ref = prob_max_reference(mu, sd, 0)
    assert len(calls) >= 2 and calls[-1][1] > calls[0][1]
    assert 0 < ref < 1e-6  # really a long shot
    assert abs(got - ref) <= 1e-6 * ref
    assert abs(prob_max_normal(mu, sd, 0) - ref) <= 1e-6 * ref


def test_mass_below_the_guess_widens_the_range_downwards(monkeypatch: pytest.MonkeyPatch) -> None:
    # One wide competitor 10 of arm 0's sds above it (twice as wide): the guessed lower end is
    # 10 - 4 * 2 = 2, but arm 0 wins only when that competitor draws low, so its winning mass
    # peaks near z ~ 2.4 and reaches well below 2. The lower tail bound must catch that.
    mu = np.array([0.0, 10.0, -20.0])
    sd = np.array([1.0, 2.0, 1.0])
    calls = _count_passes(monkeypatch)
    got = prob_max_normal_numpy(mu, sd, 0)
    ref = prob_max_reference(mu, sd, 0)
    assert len(calls) >= 2 and calls[-1][0] < calls[0][0]
    assert abs(got - ref) <= 1e-6 * ref
    assert abs(prob_max_normal(mu, sd, 0) - ref) <= 1e-6 * ref


@IMPLEMENTATIONS
def test_random_states_match_reference_on_both_paths(impl: Callable[..., float]) -> None:
    # Random 12-arm states: means within a few sds, widths over a decade (so both the fixed
    # grid and the narrow-competitor path run). 1e-6 relative + 1e-13 absolute: the measured
    # worst case of the rule on trained 50-arm states is ~3e-7 relative, and dropping a
    # competitor (u_b + 6.5 r_b below the range) costs at most 4e-11 relative; a pruning or
    # range rule that dropped mass would fail by orders of magnitude.
    rng = np.random.default_rng(11)
    narrow_seen = wide_seen = 0
    for _ in range(12):
        mu = rng.normal(0.0, 1.0, 12)
        sd = np.exp(rng.normal(0.0, 0.8, 12))
        for a in rng.choice(12, size=2, replace=False):
            r = sd / sd[a]
            if np.any(np.delete(r, a) < propensity._NARROW):
                narrow_seen += 1
            else:
                wide_seen += 1
            got = impl(mu, sd, int(a))
            ref = prob_max_reference(mu, sd, int(a))
            assert abs(got - ref) <= 1e-6 * ref + 1e-13, (mu, sd, a)
    assert narrow_seen and wide_seen


def test_far_competitors_are_dropped_within_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forty competitors placed 7 of their sds below the guessed lower end have Phi_b >= 1 - 1e-12
    # on the range: they are dropped (no row in the quadrature) and the result stays within the
    # documented 4e-11 relative per dropped competitor of the full reference.
    rows = _count_ndtr_rows(monkeypatch)
    mu = np.r_[0.0, 0.3, np.full(40, -4.0 - 4.0 - 7.0)]
    sd = np.r_[1.0, 1.0, np.full(40, 1.0)]
    got = prob_max_normal_numpy(mu, sd, 0)
    ref = prob_max_reference(mu, sd, 0)
    assert rows and max(rows) == 1  # only the one close competitor was evaluated
    assert abs(got - ref) <= 40 * 4.1e-11 * ref + 1e-10 * ref


@IMPLEMENTATIONS
def test_probabilities_of_all_arms_sum_to_one_for_fifty_arms(impl: Callable[..., float]) -> None:
    # Every arm's probability is computed independently (its own range, pruning and path), so
    # the sum is an end-to-end check: 50 x ~3e-7 relative worst case stays below 1e-6 in total.
    rng = np.random.default_rng(4)
    for _ in range(3):
        mu = rng.normal(0.0, 0.5, 50)
        sd = np.exp(rng.normal(-1.0, 0.5, 50))
        total = sum(impl(mu, sd, a) for a in range(50))
        assert total == pytest.approx(1.0, abs=1e-6)


def test_competitor_reaching_into_the_range_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # The documented rule drops only competitors with u_b + 6.5 r_b below the range; one whose
    # reach ends half an sd inside it must still be evaluated.
    rows = _count_ndtr_rows(monkeypatch)
    # Arm 1 sets the guessed lower end max(-9, 0.3 - 4) = -3.7, i.e. the panel edge -5.
    z_lo = float(propensity._EDGES[int((0.3 - 4.0 + 9.0) // 2.0)])
    mu = np.array([0.0, 0.3, z_lo + 0.5 - 6.5])
    sd = np.ones(3)
    prob_max_normal_numpy(mu, sd, 0)
    assert rows and min(rows) == 2
