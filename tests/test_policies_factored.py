"""The factored policies for (deal, course) grids: exact argmax by branch and bound, the ADF
update, learning from parts, persistence and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandit_engine.errors import ValidationError
from bandit_engine.policies._pair_search import grid_argmax
from bandit_engine.policies._ties import TIE_RTOL
from bandit_engine.policies.factored import FactoredTS, FactoredUCB
from bandit_engine.records import PairGrid


def _grid(
    rng: np.random.Generator, n_d: int, n_c: int, k_d: int = 3, k_c: int = 2, g: int = 3, h: int = 4
) -> PairGrid:
    return PairGrid(
        deal_ids=tuple(f"d{i}" for i in range(n_d)),
        course_ids=tuple(f"c{j}" for j in range(n_c)),
        deal_features=rng.normal(size=(n_d, k_d)),
        course_features=rng.normal(size=(n_c, k_c)),
        deal_cell=rng.integers(0, g, size=n_d).astype(np.intp),
        course_cell=rng.integers(0, h, size=n_c).astype(np.intp),
        n_deal_cells=g,
        n_course_cells=h,
    )


def _learn(policy: FactoredUCB | FactoredTS, grid: PairGrid, d: int, c: int, r: float) -> None:
    """Learn reward ``r`` for the pair at grid positions ``(d, c)``, with its rows and cell."""
    policy.update_pair(
        grid.deal_ids[d],
        grid.course_ids[c],
        grid.deal_features[d],
        grid.course_features[c],
        int(grid.deal_cell[d]),
        int(grid.course_cell[c]),
        r,
    )


def _train(policy: FactoredUCB | FactoredTS, grid: PairGrid, n: int, seed: int) -> None:
    """Random pairs with rewards from an additive truth (parts + cells + noise)."""
    rng = np.random.default_rng(seed)
    n_d, n_c = len(grid.deal_ids), len(grid.course_ids)
    qd, qc = rng.normal(size=n_d), rng.normal(size=n_c)
    for _ in range(n):
        d, c = int(rng.integers(n_d)), int(rng.integers(n_c))
        r = qd[d] + qc[c] + 0.3 * grid.deal_features[d, 0] + rng.normal(scale=0.5)
        _learn(policy, grid, d, c, r)


def _dense_ties(scores: np.ndarray) -> set[tuple[int, int]]:
    best = scores.max()
    r, c = np.nonzero(scores >= best - TIE_RTOL * max(1.0, abs(best)))
    return set(zip(r.tolist(), c.tolist(), strict=True))


# -- the search --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_grid_argmax_matches_a_full_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_d, n_c = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    scores = np.round(rng.normal(size=(n_d, n_c)), int(rng.integers(0, 3)))  # rounding: ties
    slack = rng.uniform(0, 2, size=n_d)
    res = grid_argmax(scores.max(axis=1) + slack, lambda deals: scores[deals])
    found = set(zip(res.deals.tolist(), res.courses.tolist(), strict=True))
    assert found == _dense_ties(scores)
    assert res.best == scores.max()
    assert 0 < res.scored <= scores.size


def test_grid_argmax_skips_deals_that_cannot_win() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2000, 50))
    res = grid_argmax(scores.max(axis=1), lambda deals: scores[deals])
    # exact bounds: only the batches up to the best deal are scored (8 + 16 deals at most)
    assert res.scored <= 24 * 50


# -- UCB: exact argmax over the grid -----------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_ucb_choice_is_the_argmax_of_a_full_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = _grid(rng, 60, 15)
    policy = FactoredUCB(seed=seed, refresh=37)
    policy.choose_grid(grid)  # fixes the layout
    _train(policy, grid, int(rng.integers(0, 400)), seed)
    mean, var = policy.score_pairs(grid)
    ucb = mean + policy.scale * np.sqrt(var)
    # the vectorised scorer (decomposed variance) equals the explicit quadratic form
    np.testing.assert_allclose(policy.ucb_grid(grid), ucb, rtol=1e-10, atol=1e-10)
    ties = _dense_ties(ucb)
    choice = policy.choose_grid(grid)
    assert (choice.deal, choice.course) in ties
    assert choice.propensity == pytest.approx(1.0 / len(ties), rel=1e-12)
    assert choice.score == pytest.approx(ucb.max(), rel=1e-9)


def test_a_fresh_ucb_ties_every_pair_and_logs_the_uniform_propensity() -> None:
    grid = _grid(np.random.default_rng(1), 40, 10, g=1, h=1)
    policy = FactoredUCB(seed=0)
    # features all zero: every pair has the same prior mean and width
    flat = PairGrid(
        grid.deal_ids,
        grid.course_ids,
        np.zeros((40, 3)),
        np.zeros((10, 2)),
        grid.deal_cell,
        grid.course_cell,
        1,
        1,
    )
    choice = policy.choose_grid(flat)
    assert choice.propensity == pytest.approx(1.0 / 400)
    assert choice.scored == 400


def test_trained_ucb_scores_a_small_part_of_a_large_grid() -> None:
    rng = np.random.default_rng(3)
    grid = _grid(rng, 1000, 200)
    policy = FactoredUCB(seed=0)
    policy.choose_grid(grid)
    _train(policy, grid, 3000, 3)
    choice = policy.choose_grid(grid)
    assert choice.scored < grid.size // 4


def test_epsilon_mixes_in_the_uniform_share_exactly() -> None:
    rng = np.random.default_rng(4)
    grid = _grid(rng, 30, 7)
    policy = FactoredUCB(seed=1, epsilon=0.2)
    policy.choose_grid(grid)
    _train(policy, grid, 300, 4)
    mean, var = policy.score_pairs(grid)
    ucb = mean + policy.scale * np.sqrt(var)
    ties = _dense_ties(ucb)
    for _ in range(50):
        ch = policy.choose_grid(grid)
        inside = (ch.deal, ch.course) in ties
        expected = 0.8 * inside / len(ties) + 0.2 / grid.size
        assert ch.propensity == pytest.approx(expected, rel=1e-12)


# -- TS ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_ts_plays_an_exact_argmax_of_its_draws(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = _grid(rng, 80, 12)
    policy = FactoredTS(seed=seed, propensity_samples=4)
    policy.choose_grid(grid)
    _train(policy, grid, 300, seed)
    twin = FactoredTS(seed=seed, propensity_samples=4)
    twin.set_state(json.loads(json.dumps(policy.get_state())))
    prep = twin._prepare(grid)
    md, mc, tables = twin._draws(grid, prep)
    E, _ = prep.bundle_terms(np.arange(80), False)
    wins: list[set[tuple[int, int]]] = []
    for s in range(5):
        dense = md[:, s][:, None] + mc[:, s][None, :] + E
        dense += tables[s][grid.deal_cell][:, grid.course_cell]
        wins.append(_dense_ties(dense))
    choice = policy.choose_grid(grid)
    pair = (choice.deal, choice.course)
    assert any(pair in w for w in wins)
    share = sum((pair in w) / len(w) for w in wins) / 5
    assert choice.propensity == pytest.approx(share, rel=1e-12)


# -- the ADF update ----------------------------------------------------------------------------
def test_with_effects_pinned_the_shared_block_is_exact_ridge() -> None:
    # Prior variances ~0 for every effect: the model is plain ridge regression on h.
    rng = np.random.default_rng(5)
    grid = _grid(rng, 12, 5)
    policy = FactoredUCB(l2=2.0, l2_deal=1e12, l2_course=1e12, l2_bundle=1e12, refresh=10**6)
    policy.choose_grid(grid)
    rows, ys = [], []
    for _ in range(200):
        d, c = int(rng.integers(12)), int(rng.integers(5))
        y = float(rng.normal())
        _learn(policy, grid, d, c, y)
        h = np.zeros(policy.n_shared)
        h[0] = 1.0
        h[1:4] = grid.deal_features[d]
        h[4:6] = grid.course_features[c]
        h[6 + int(grid.deal_cell[d]) * 4 + int(grid.course_cell[c])] = 1.0
        rows.append(h)
        ys.append(y)
    H = np.array(rows)
    exact = np.linalg.solve(H.T @ H + 2.0 * np.eye(H.shape[1]), H.T @ np.array(ys))
    np.testing.assert_allclose(policy.P_ @ policy.b_, exact, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        policy.P_, np.linalg.inv(H.T @ H + 2.0 * np.eye(H.shape[1])), atol=1e-8
    )


def test_a_never_shown_pair_is_scored_from_its_parts() -> None:
    # Deal 0 is good with every course it was shown with; its pair with course 9 was never
    # shown, yet scores above a pair of an average deal with the same course.
    grid = _grid(np.random.default_rng(6), 10, 10, g=1, h=1)
    flat = PairGrid(
        grid.deal_ids,
        grid.course_ids,
        np.zeros((10, 3)),
        np.zeros((10, 2)),
        grid.deal_cell,
        grid.course_cell,
        1,
        1,
    )
    policy = FactoredUCB(alpha=0.0, seed=0)
    policy.choose_grid(flat)
    rng = np.random.default_rng(7)
    for _ in range(400):
        d, c = int(rng.integers(10)), int(rng.integers(9))
        r = (1.0 if d == 0 else 0.0) + rng.normal(scale=0.3)
        policy.update_pair(f"d{d}", f"c{c}", np.zeros(3), np.zeros(2), 0, 0, r)
    mean, _ = policy.score_pairs(flat)
    assert mean[0, 9] > mean[1:, 9].max() + 0.5  # the deal's effect is ~1 (noise sd 0.3)
    assert policy.choose_grid(flat).deal == 0


@pytest.mark.parametrize(("cls", "factor"), [(FactoredUCB, 2.5), (FactoredTS, 4.0)])
def test_learning_from_parts_beats_random_on_a_grid_larger_than_the_horizon(
    cls: type[FactoredUCB], factor: float
) -> None:
    rng = np.random.default_rng(8)
    n_d, n_c = 200, 40
    grid = _grid(rng, n_d, n_c)
    qd, qc = rng.normal(size=n_d), rng.normal(size=n_c)
    cell = rng.normal(size=(3, 4))
    truth = qd[:, None] + qc[None, :] + cell[grid.deal_cell][:, grid.course_cell]
    p = 1.0 / (1.0 + np.exp(-(truth - 2.0)))  # mean click probability ~12%, best ~90%
    policy = cls(seed=1)
    got = 0.0
    for _ in range(3000):
        ch = policy.choose_grid(grid)
        r = float(rng.random() < p[ch.deal, ch.course])
        got += p[ch.deal, ch.course]
        _learn(policy, grid, ch.deal, ch.course, r)
    # 8,000 pairs and 3,000 decisions: only sharing across parts can find the good pairs.
    # Random earns p.mean(); with this seed UCB measured 3.2x and TS 6.2x, the asserted factors
    # leave room for BLAS rounding moving a tie-break.
    assert got / 3000 > factor * p.mean()


# -- persistence and bad input -----------------------------------------------------------------
@pytest.mark.parametrize("cls", [FactoredUCB, FactoredTS])
def test_state_round_trip_gives_the_same_decisions(cls: type[FactoredUCB]) -> None:
    rng = np.random.default_rng(9)
    grid = _grid(rng, 50, 10)
    policy = cls(seed=3)
    policy.choose_grid(grid)
    _train(policy, grid, 250, 9)
    state = json.loads(json.dumps(policy.get_state()))
    twin = cls(seed=3)
    twin.set_state(state)
    for _ in range(5):
        a, b = policy.choose_grid(grid), twin.choose_grid(grid)
        assert (a.deal, a.course, a.propensity) == (b.deal, b.course, b.propensity)
    assert json.dumps(twin.get_state()) == json.dumps(policy.get_state())


def test_bad_input_names_the_field() -> None:
    rng = np.random.default_rng(10)
    grid = _grid(rng, 5, 3)
    policy = FactoredUCB()
    with pytest.raises(ValidationError, match="update_pair"):
        policy.update_pair("d0", "c0", np.zeros(3), np.zeros(2), 0, 0, 1.0)
    policy.choose_grid(grid)
    with pytest.raises(ValidationError, match="deal_cell"):
        policy.update_pair("d0", "c0", np.zeros(3), np.zeros(2), 7, 0, 1.0)
    with pytest.raises(ValidationError, match="deal_row"):
        policy.update_pair("d0", "c0", np.zeros(4), np.zeros(2), 0, 0, 1.0)
    with pytest.raises(ValidationError, match="deal_row"):
        policy.update_pair("d0", "c0", np.full(3, np.nan), np.zeros(2), 0, 0, 1.0)
    bad = PairGrid(
        grid.deal_ids,
        grid.course_ids,
        np.full((5, 3), np.inf),
        grid.course_features,
        grid.deal_cell,
        grid.course_cell,
        3,
        4,
    )
    with pytest.raises(ValidationError, match=r"grid\.deal_features"):
        policy.choose_grid(bad)
    other = _grid(rng, 5, 3, k_d=4)
    with pytest.raises(ValidationError, match="grid"):
        policy.choose_grid(other)
    with pytest.raises(ValidationError, match="reward"):
        policy.update_pair("d0", "c0", np.zeros(3), np.zeros(2), 0, 0, float("nan"))


def test_cached_grids_stay_equal_to_fresh_lookups_while_learning() -> None:
    # Two grids in turn, learning after every choice: the patched per-grid caches must give the
    # same choices as a policy restored from the state (which rebuilds every lookup).
    rng = np.random.default_rng(11)
    grids = [_grid(rng, 40, 8), _grid(rng, 40, 8)]
    grids[1] = PairGrid(
        tuple(f"x{i}" for i in range(20)) + grids[0].deal_ids[:20],
        grids[0].course_ids,
        grids[1].deal_features,
        grids[1].course_features,
        grids[1].deal_cell,
        grids[1].course_cell,
        3,
        4,
    )
    policy = FactoredUCB(seed=2)
    for t in range(300):
        g = grids[t % 2]
        ch = policy.choose_grid(g)
        _learn(policy, g, ch.deal, ch.course, float(rng.random() < 0.3))
        if t % 50 == 49:
            twin = FactoredUCB(seed=2)
            twin.set_state(json.loads(json.dumps(policy.get_state())))
            for gg in grids:
                m1, v1 = policy.score_pairs(gg)
                m2, v2 = twin.score_pairs(gg)
                np.testing.assert_allclose(m1, m2, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [FactoredUCB, FactoredTS])
def test_a_mask_keeps_the_choice_among_allowed_pairs_with_exact_propensities(
    cls: type[FactoredUCB],
) -> None:
    rng = np.random.default_rng(12)
    base = _grid(rng, 50, 9)
    allowed = rng.random((50, 9)) < 0.15
    grid = PairGrid(
        base.deal_ids,
        base.course_ids,
        base.deal_features,
        base.course_features,
        base.deal_cell,
        base.course_cell,
        3,
        4,
        allowed,
    )
    policy = cls(seed=4, epsilon=0.1)
    policy.choose_grid(grid)
    _train(policy, base, 200, 12)
    for _ in range(40):
        ch = policy.choose_grid(grid)
        assert allowed[ch.deal, ch.course]
        assert ch.propensity >= 0.1 / grid.size - 1e-15
    if cls is FactoredUCB:
        ucb = np.where(allowed, policy.ucb_grid(base), -np.inf)  # type: ignore[attr-defined]
        ties = _dense_ties(ucb)
        ch = policy.choose_grid(grid)
        inside = (ch.deal, ch.course) in ties
        assert ch.propensity == pytest.approx(0.9 * inside / len(ties) + 0.1 / grid.size)


def test_ts_covariance_factor_is_saved_so_a_loaded_policy_draws_the_same() -> None:
    # Between refreshes the draws use the factor of an older covariance; a loaded policy must
    # use that same factor, not one of its newer P, or it would not repeat the original's draws.
    rng = np.random.default_rng(13)
    grid = _grid(rng, 40, 8)
    policy = FactoredTS(seed=6, cov_refresh=32)
    policy.choose_grid(grid)
    _train(policy, grid, 100, 13)
    policy.choose_grid(grid)  # factor computed now
    _train(policy, grid, 5, 14)  # P moves, the factor is not yet stale
    twin = FactoredTS(seed=6, cov_refresh=32)
    twin.set_state(json.loads(json.dumps(policy.get_state())))
    for _ in range(5):
        a, b = policy.choose_grid(grid), twin.choose_grid(grid)
        assert (a.deal, a.course, a.propensity) == (b.deal, b.course, b.propensity)
    fresh = FactoredTS(seed=6, cov_refresh=1)  # refreshed every decision: a different factor
    state = policy.get_state()
    fresh.set_state(json.loads(json.dumps(state)))
    assert fresh._factor() is not None and not np.array_equal(fresh._factor(), twin._factor())
    with pytest.raises(Exception, match="cov_refresh"):
        FactoredTS(cov_refresh=0)
