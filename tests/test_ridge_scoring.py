"""Packed scoring blocks of ``PackedRows``, LinUCB's float32 precision, and the compiled helpers.

Exactness claims tested here: packed float64 scores equal the direct formula to rounding and
do not depend on whether a block was cached; float32 widths stay within their stated error
bound; float32 LinUCB makes the same choices with the same propensities as float64 LinUCB;
the numba helpers give the same numbers as the numpy code (bit for bit where documented).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bandit_engine.errors import ConfigError
from bandit_engine.policies._arms import ArmTable
from bandit_engine.policies._kernels import kernels as loaded_kernels
from bandit_engine.policies._packed import MAX_BLOCKS, SPARE_BLOCK_ROWS, PackedRows
from bandit_engine.policies.linucb import LinUCB
from bandit_engine.policies.registry import policy_from_dict, policy_to_dict


@pytest.fixture(params=["numba", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with the compiled helpers (when numba is installed) and without."""
    if request.param == "numpy":
        loaded_kernels.load(numba=False)
    else:
        pytest.importorskip("numba")
        monkeypatch.delenv("BANDIT_ENGINE_NO_NUMBA", raising=False)
        loaded_kernels.reset()
    yield request.param
    loaded_kernels.reset()  # the next user decides afresh (from the environment)


def _trained(n_rows: int, d: int, precision: str = "float64", seed: int = 0) -> PackedRows:
    rng = np.random.default_rng(seed)
    ridge = PackedRows(d, 0.7, precision=precision)
    ridge.ensure_rows(n_rows)
    for _ in range(6 * n_rows):
        ridge.update(int(rng.integers(n_rows)), rng.normal(size=d), float(rng.normal()))
    return ridge


def _direct(ridge: PackedRows, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ridge.theta[rows] @ x, np.einsum("kij,i,j->k", ridge.A_inv[rows], x, x)


def _ro(rows: list[int]) -> np.ndarray:
    out = np.array(rows, dtype=np.intp)
    out.setflags(write=False)  # as ArmTable hands them out (the identity fast path)
    return out


def test_packed_scores_match_the_direct_formula_before_and_after_updates(kernels: str) -> None:
    d = 7
    ridge = _trained(40, d)
    rng = np.random.default_rng(3)
    rows = _ro([5, 31, 2, 17, 0, 39, 11])
    for step in range(30):
        x = rng.normal(size=d)
        m, q = ridge.mean_var(x, rows)
        want_m, want_q = _direct(ridge, x, rows)
        # the same sums in another order: agreement to rounding on O(1) numbers
        np.testing.assert_allclose(m, want_m, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(q, want_q, rtol=1e-12, atol=1e-12)
        # learning in a row of the cached block refreshes it (stale copies would fail above)
        ridge.update(int(rows[step % rows.shape[0]]), rng.normal(size=d), 1.0)
    assert len(ridge._blocks) == 1


def test_scores_do_not_depend_on_block_caching(kernels: str) -> None:
    """A list scored from the scratch block (first sight), from a cached block, and by a
    restored copy that has no blocks yet: bit for bit the same numbers."""
    d = 9
    ridge = _trained(30, d)
    rows = _ro([4, 8, 15, 16, 23, 29])
    x = np.random.default_rng(4).normal(size=d)
    first = ridge.mean_var(x, rows)
    assert not ridge._blocks
    second = ridge.mean_var(x, rows)  # admitted on the second sight
    third = ridge.mean_var(x, rows)  # from the cached block
    assert len(ridge._blocks) == 1
    restored = PackedRows(d, 0.7)
    restored.set_state(ridge.get_state(), ridge.n_rows)
    again = restored.mean_var(x, rows)
    for other in (second, third, again):
        np.testing.assert_array_equal(other[0], first[0])
        np.testing.assert_array_equal(other[1], first[1])


def test_writeable_row_arrays_are_looked_up_by_content() -> None:
    d = 5
    ridge = _trained(20, d)
    x = np.random.default_rng(5).normal(size=d)
    rows = np.array([1, 2, 3], dtype=np.intp)
    ridge.mean_var(x, rows)
    ridge.mean_var(x, rows)
    rows[:] = [7, 8, 9]  # the same array object with other rows must not reuse the block
    m, q = ridge.mean_var(x, rows)
    want_m, want_q = _direct(ridge, x, rows)
    np.testing.assert_allclose(m, want_m, rtol=1e-12)
    np.testing.assert_allclose(q, want_q, rtol=1e-12)


def test_block_cache_is_bounded_and_stays_correct(kernels: str) -> None:
    d, n = 4, 60
    ridge = _trained(n, d)
    rng = np.random.default_rng(6)
    lists = [_ro(sorted(rng.choice(n, size=20, replace=False).tolist())) for _ in range(80)]
    x = rng.normal(size=d)
    for _ in range(2):  # every list twice: each is admitted, older ones evicted
        for rows in lists:
            ridge.mean_var(x, rows)
    assert len(ridge._blocks) <= MAX_BLOCKS
    assert ridge._block_rows <= 2 * ridge.n_rows + SPARE_BLOCK_ROWS
    assert ridge._block_rows == sum(b.tri.shape[0] for b in ridge._blocks.values())
    for rows in lists[::7]:
        ridge.update(int(rows[0]), rng.normal(size=d), 0.5)
        m, q = ridge.mean_var(x, rows)
        want_m, want_q = _direct(ridge, x, rows)
        np.testing.assert_allclose(m, want_m, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(q, want_q, rtol=1e-12, atol=1e-12)


def test_repeated_prior_row_is_refreshed_when_it_becomes_an_arm(kernels: str) -> None:
    """``probabilities`` scores unknown arms from the spare prior row, several times in one
    list; once that row becomes a real arm and learns, every position of it is refreshed."""
    d = 3
    ridge = _trained(5, d)
    spare = ridge.n_rows
    rows = _ro([0, spare, 2, spare])
    x = np.array([0.3, -1.0, 2.0])
    ridge.mean_var(x, rows)
    ridge.mean_var(x, rows)
    ridge.ensure_rows(spare + 1)  # the spare row is now an arm's row
    ridge.update(spare, np.array([1.0, 0.5, -0.2]), 2.0)
    m, q = ridge.mean_var(x, rows)
    want_m, want_q = _direct(ridge, x, rows)
    np.testing.assert_allclose(m, want_m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q, want_q, rtol=1e-12, atol=1e-12)
    assert q[1] == q[3] and q[1] != q[0]


@pytest.mark.parametrize("d", [1, 6, 33])
def test_float32_widths_stay_within_their_bound(kernels: str, d: int) -> None:
    ridge = _trained(25, d, precision="float32", seed=d)
    rng = np.random.default_rng(d + 1)
    rows = _ro(list(range(25)))
    worst = 0.0
    for _ in range(50):
        x = rng.normal(size=d) * rng.choice([1e-3, 1.0, 30.0])
        m, q, err = ridge.mean_var_bounded(x, rows)
        exact = np.einsum("kij,i,j->k", ridge.A_inv[rows], x, x)
        assert np.all(np.abs(q - exact) <= err)
        np.testing.assert_allclose(m, ridge.theta[rows] @ x, rtol=1e-12, atol=1e-14)
        worst = max(worst, float(np.max(np.abs(q - exact) / np.maximum(exact, 1e-300))))
    # float32 rounding, not worse: well under 1e-4 relative on these positive definite forms
    assert worst < 1e-4


def _stream(n: int, d: int, arms: list[str], seed: int) -> Iterator[tuple[np.ndarray, list[str]]]:
    rng = np.random.default_rng(seed)
    for t in range(n):
        sub = arms if t % 3 else arms[3:17]
        yield rng.normal(size=d), sub


@pytest.mark.parametrize(
    ("alpha", "forgetting"),
    [(0.0, {}), (0.05, {}), (1.0, {}), (0.05, {"window": 40}), (0.3, {"discount": 0.98})],
)
def test_float32_linucb_chooses_like_float64(
    kernels: str, alpha: float, forgetting: dict[str, Any]
) -> None:
    d, k = 12, 24
    arms = [f"b{i}" for i in range(k)]
    Z = np.zeros((k, 1))
    truth = np.random.default_rng(7).normal(size=(k, d)) * 0.2
    exact = LinUCB(alpha=alpha, l2=0.5, epsilon=0.05, seed=11, **forgetting)
    fast = LinUCB(
        alpha=alpha,
        l2=0.5,
        epsilon=0.05,
        precision="float32",
        seed=11,
        **forgetting,
    )
    coins = np.random.default_rng(8)
    for x, sub in _stream(1500, d, arms, seed=9):
        Zs = Z[: len(sub)]
        a, b = exact.choose(x, sub, Zs), fast.choose(x, sub, Zs)
        assert (a.index, a.propensity) == (b.index, b.propensity)
        assert a.probabilities is not None and b.probabilities is not None
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        # loser scores carry float32 rounding: tiny next to the scores' spread
        np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=1e-5)
        arm = sub[a.index]
        p = 1.0 / (1.0 + np.exp(-truth[arms.index(arm)] @ x))
        r = float(coins.random() < p)
        exact.update(x, arm, Zs[a.index], r)
        fast.update(x, arm, Zs[b.index], r)
    x = np.random.default_rng(10).normal(size=d)
    np.testing.assert_array_equal(
        exact.probabilities(x, [*arms, "new"], np.zeros((k + 1, 1))),
        fast.probabilities(x, [*arms, "new"], np.zeros((k + 1, 1))),
    )


def test_float32_keeps_fresh_arms_tied() -> None:
    pol = LinUCB(alpha=1.0, precision="float32", seed=0)
    x = np.random.default_rng(1).normal(size=10)
    arms = [f"a{i}" for i in range(30)]
    probs = pol.probabilities(x, arms, np.zeros((30, 2)))
    assert probs is not None
    np.testing.assert_array_equal(probs, np.full(30, 1 / 30))


def test_precision_is_validated_saved_and_restored() -> None:
    with pytest.raises(ConfigError, match="precision must be one of"):
        LinUCB(precision="float16")
    # the default is left out of the parameters: default models save and print as before
    assert "precision" not in LinUCB().get_params()
    pol = LinUCB(alpha=0.3, precision="float32", seed=2)
    rng = np.random.default_rng(3)
    arms = ["a", "b", "c"]
    Z = np.zeros((3, 1))
    for _ in range(40):
        x = rng.normal(size=4)
        c = pol.choose(x, arms, Z)
        pol.update(x, arms[c.index], Z[c.index], float(rng.random() < 0.3))
    data = policy_to_dict(pol)
    assert data["params"]["precision"] == "float32"
    assert set(data["state"]) >= {"A_inv", "theta"}
    assert not any("tri" in key or "block" in key for key in data["state"])  # derived only
    loaded = policy_from_dict(data)
    assert isinstance(loaded, LinUCB) and loaded.precision == "float32"
    x = rng.normal(size=4)
    np.testing.assert_array_equal(loaded.probabilities(x, arms, Z), pol.probabilities(x, arms, Z))
    for _ in range(20):
        x = rng.normal(size=4)
        a, b = pol.choose(x, arms, Z), loaded.choose(x, arms, Z)
        assert a.index == b.index
        np.testing.assert_array_equal(a.scores, b.scores)


def test_compiled_helpers_match_numpy() -> None:
    kernels = pytest.importorskip("bandit_engine.policies._ridge_numba")
    rng = np.random.default_rng(12)
    for d in (1, 2, 5, 64):
        pk = PackedRows(d, 1.0).packing()
        x = rng.normal(size=d) * 10.0
        w = x.take(pk.tri_i) * x.take(pk.tri_j) * pk.tri_c
        for dtype in (np.float64, np.float32):
            out = np.empty(w.shape[0], dtype)
            kernels.tri_products(x, out)
            np.testing.assert_array_equal(out, w.astype(dtype))
    # one Sherman-Morrison step: the same state to rounding, symmetry kept bit for bit
    d = 16
    A = rng.normal(size=(d, d))
    a_inv = np.linalg.inv(A @ A.T + np.eye(d))
    a_inv = 0.5 * (a_inv + a_inv.T)
    b, theta, x = rng.normal(size=d), np.empty(d), rng.normal(size=d)
    mine_a, mine_b = a_inv.copy(), b.copy()
    assert kernels.rank1_learn(mine_a, mine_b, theta, x, 0.7)
    u = a_inv @ x
    want_a = a_inv - np.outer(u, u) / (1.0 + x @ u)
    want_b = b + 0.7 * x
    np.testing.assert_allclose(mine_a, want_a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mine_b, want_b, rtol=1e-15)
    np.testing.assert_allclose(theta, want_a @ want_b, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(mine_a, mine_a.T)
    bad = x.copy()
    bad[3] = np.nan
    before = mine_a.copy()
    assert not kernels.rank1_learn(mine_a, mine_b, theta, bad, 1.0)
    np.testing.assert_array_equal(mine_a, before)


def test_learning_with_and_without_kernels_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    states = []
    monkeypatch.delenv("BANDIT_ENGINE_NO_NUMBA", raising=False)
    try:
        for numba in (True, False):
            loaded_kernels.load(numba=numba)
            ridge = _trained(10, 6, seed=4)
            states.append(ridge.get_state())
    finally:
        loaded_kernels.reset()
    for key in ("A_inv", "b", "theta"):
        np.testing.assert_allclose(states[0][key], states[1][key], rtol=1e-9, atol=1e-12)


def test_arm_table_caches_recent_tuples_by_identity() -> None:
    table = ArmTable()
    city_a = ("x1", "x2", "x3")
    city_b = ("y1", "x2")
    rows_a, contiguous_a, new_a = table.rows(city_a)
    rows_b, contiguous_b, new_b = table.rows(city_b)
    assert (new_a, new_b) == (3, 1) and contiguous_a and not contiguous_b
    assert rows_a.tolist() == [0, 1, 2] and rows_b.tolist() == [3, 1]
    assert not rows_a.flags.writeable
    # alternating recurring tuples: the very same arrays come back, nothing is created
    for _ in range(3):
        assert table.rows(city_a)[0] is rows_a
        assert table.rows(city_b)[0] is rows_b
    # an equal list (not the cached object) after its tuple: found by value
    again, _, n_new = table.rows(list(city_b))
    assert again.tolist() == [3, 1] and n_new == 0
    # a new tuple with a new arm
    rows_c, _, new_c = table.rows(("z1", "x1"))
    assert rows_c.tolist() == [4, 0] and new_c == 1
    table.clear_cache()
    assert table.rows(city_a)[0].tolist() == [0, 1, 2]


def test_shared_thompson_sampling_builds_no_packing() -> None:
    """The packed-triangle indices of a d*p-wide shared model would be large and unused."""
    from bandit_engine.policies.thompson import LinearTS

    pol = LinearTS(mode="shared", propensity_samples=20, seed=0)
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(4, 3))
    for _ in range(5):
        x = rng.normal(size=6)
        c = pol.choose(x, ["a", "b", "c", "d"], Z)
        pol.update(x, "abcd"[c.index], Z[c.index], 1.0)
    assert pol.ridge_ is not None and getattr(pol.ridge_, "_pk", None) is None
    assert not isinstance(pol.ridge_, PackedRows)
