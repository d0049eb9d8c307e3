"""The grid controls (``grid_uniform``, ``grid_popularity``): the grid-policy suite.

Exact propensities (against the choice frequencies and against a listed computation), masks,
same seed same decisions, state round trip, bad input.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.policies import make_policy
from bandit_engine.policies.grid_baselines import GridPopularity, GridUniform
from bandit_engine.records import PairGrid


def _grid(
    nd: int = 6, nc: int = 4, *, allowed: np.ndarray | None = None, tag: str = ""
) -> PairGrid:
    return PairGrid(
        tuple(f"d{tag}{i}" for i in range(nd)),
        tuple(f"c{j}" for j in range(nc)),
        np.zeros((nd, 1)),
        np.zeros((nc, 1)),
        np.zeros(nd, dtype=np.intp),
        np.zeros(nc, dtype=np.intp),
        1,
        1,
        allowed,
    )


def _learn(p: GridPopularity | GridUniform, grid: PairGrid, d: int, c: int, r: float) -> None:
    p.update_pair(grid.deal_ids[d], grid.course_ids[c], np.zeros(1), np.zeros(1), 0, 0, r)


def _listed_popularity(p: GridPopularity, grid: PairGrid) -> np.ndarray:
    """The same policy computed pair by pair (the reference for its propensities)."""
    nd, nc = len(grid.deal_ids), len(grid.course_ids)
    vals = np.full((nd, nc), p.prior_mean)
    for (ds, cs), row in p.pairs_.items():
        deal = list(p.deal_slots_)[ds]
        course = list(p.course_slots_)[cs]
        if deal in grid.deal_ids and course in grid.course_ids:
            i, j = grid.deal_ids.index(deal), grid.course_ids.index(course)
            vals[i, j] = (p._sum[row] + p.prior_mean * p.prior_weight) / (
                p._count[row] + p.prior_weight
            )
    allowed = np.ones((nd, nc), bool) if grid.allowed is None else grid.allowed
    best = vals[allowed].max()
    tied = allowed & (vals == best)
    eps = p.epsilon
    out: np.ndarray = (1 - eps) * tied / tied.sum() + eps * allowed / allowed.sum()
    return out


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_popularity_propensities_are_exact(eps: float) -> None:
    p = GridPopularity(epsilon=eps, seed=0)
    g = _grid()
    _learn(p, g, 1, 2, 1.0)
    _learn(p, g, 3, 0, 1.0)  # two pairs tied at 0.5
    _learn(p, g, 4, 1, 0.0)  # below the never-shown pairs' 0
    pi = _listed_popularity(p, g)
    counts: Counter[tuple[int, int]] = Counter()
    n = 20000
    for _ in range(n):
        ch = p.choose_grid(g)
        counts[(ch.deal, ch.course)] += 1
        assert ch.propensity == pytest.approx(pi[ch.deal, ch.course], rel=1e-12)
    # frequencies against the propensities: 4 standard errors of a binomial share at n = 20,000
    for (d, c), k in counts.items():
        se = np.sqrt(pi[d, c] * (1 - pi[d, c]) / n)
        assert abs(k / n - pi[d, c]) < 4 * se + 1e-9
    assert sum(counts.values()) == n


def test_popularity_ties_the_unseen_pairs_at_the_prior() -> None:
    # every pair shown scored below the prior: the choice is uniform over the unseen ones
    p = GridPopularity(prior_mean=0.1, seed=1)
    g = _grid(3, 3)
    for d in range(3):
        _learn(p, g, d, 0, 0.0)
    pi = _listed_popularity(p, g)
    assert pi[:, 0].sum() == 0.0 and pi[:, 1:].sum() == pytest.approx(1.0)
    for _ in range(200):
        ch = p.choose_grid(g)
        assert ch.course != 0
        assert ch.propensity == pytest.approx(1 / 6)


def test_popularity_finds_an_unseen_pair_when_most_were_shown() -> None:
    p = GridPopularity(prior_mean=0.5, seed=2)
    g = _grid(3, 3)
    for d in range(3):
        for c in range(3):
            if (d, c) != (2, 1):
                _learn(p, g, d, c, 0.0)
    for _ in range(20):
        ch = p.choose_grid(g)
        assert (ch.deal, ch.course) == (2, 1) and ch.propensity == 1.0


def test_masks_are_respected_with_exact_propensities() -> None:
    allowed = np.zeros((6, 4), bool)
    allowed[::2, 1:] = True
    g = _grid(allowed=allowed)
    u = GridUniform(seed=0)
    p = GridPopularity(epsilon=0.3, seed=0)
    _learn(p, g, 1, 1, 1.0)  # a pair outside the mask: its high value must not count
    _learn(p, g, 2, 2, 0.5)
    pi = _listed_popularity(p, g)
    for _ in range(300):
        a = u.choose_grid(g)
        assert allowed[a.deal, a.course] and a.propensity == pytest.approx(1 / allowed.sum())
        b = p.choose_grid(g)
        assert allowed[b.deal, b.course]
        assert b.propensity == pytest.approx(pi[b.deal, b.course], rel=1e-12)


def test_a_pair_outside_the_grid_does_not_count() -> None:
    # popularity learned in one city's grid; another city's grid (other deals) ties its pairs
    p = GridPopularity(seed=0)
    home = _grid(tag="a")
    _learn(p, home, 0, 0, 1.0)
    away = _grid(tag="b")
    ch = p.choose_grid(away)
    assert ch.propensity == pytest.approx(1 / away.size)
    assert (p.choose_grid(home).deal, p.choose_grid(home).course) == (0, 0)


@pytest.mark.parametrize("name", ["grid_uniform", "grid_popularity"])
def test_same_seed_same_decisions_and_state_round_trip(name: str) -> None:
    g = _grid(8, 5)
    a, b = make_policy(name, seed=7), make_policy(name, seed=7)
    rng = np.random.default_rng(0)
    for _ in range(200):
        ca, cb = a.choose_grid(g), b.choose_grid(g)
        assert (ca.deal, ca.course, ca.propensity) == (cb.deal, cb.course, cb.propensity)
        r = float(rng.random() < 0.3)
        _learn(a, g, ca.deal, ca.course, r)
        _learn(b, g, cb.deal, cb.course, r)
    c = make_policy(name, seed=0)
    c.set_state(a.get_state())
    assert c.n_updates_ == a.n_updates_ == 200
    for _ in range(50):
        ca, cc = a.choose_grid(g), c.choose_grid(g)
        assert (ca.deal, ca.course, ca.propensity) == (cc.deal, cc.course, cc.propensity)


def test_popularity_learns_the_best_pair() -> None:
    # a context-free control must still find a clearly better pair on a small grid
    g = _grid(4, 3)
    rates = np.full((4, 3), 0.05)
    rates[2, 1] = 0.5
    p = GridPopularity(epsilon=0.1, seed=3)
    rng = np.random.default_rng(3)
    picks = []
    for _ in range(3000):
        ch = p.choose_grid(g)
        picks.append((ch.deal, ch.course) == (2, 1))
        _learn(p, g, ch.deal, ch.course, float(rng.random() < rates[ch.deal, ch.course]))
    # after learning it plays the best pair about (1 - eps) + eps / 12 = 91% of the time
    assert np.mean(picks[-1000:]) > 0.8


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ConfigError, match="epsilon"):
        GridPopularity(epsilon=1.5)
    with pytest.raises(ConfigError, match="prior_weight"):
        GridPopularity(prior_weight=-1.0)
    p = GridPopularity(seed=0)
    g = _grid()
    with pytest.raises(ValidationError, match="reward"):
        _learn(p, g, 0, 0, float("nan"))
    with pytest.raises(ValidationError, match="grid"):
        p.choose_grid(_grid(allowed=np.zeros((6, 4), bool)))
    with pytest.raises(ValidationError, match="state"):
        p.set_state({**p.get_state(), "pairs": [["d0", "c0"]], "sum": [1.0], "count": [0.0]})
