"""``PackedRows.mean_var`` returns the same numbers on each of its row-layout paths."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_engine.policies._packed import PackedRows


def _trained(n_rows: int, d: int) -> PackedRows:
    rng = np.random.default_rng(0)
    ridge = PackedRows(d, 1.0)
    ridge.ensure_rows(n_rows)
    for _ in range(5 * n_rows):
        ridge.update(int(rng.integers(n_rows)), rng.normal(size=d), float(rng.normal()))
    return ridge


@pytest.mark.parametrize(
    "rows",
    [
        np.arange(30),  # contiguous from 0: sliced
        np.arange(40, 100, 2),  # window of 60 rows for 30: scored whole, results gathered
        np.arange(70, 100),  # a block not starting at 0: window path without waste
        np.random.default_rng(1).permutation(120)[:90],  # unordered, window <= 3k
        np.array([3, 60, 117, 5]),  # sparse: the matrices are gathered
    ],
)
def test_every_path_matches_direct_computation(rows: np.ndarray) -> None:
    d = 6
    ridge = _trained(120, d)
    x = np.random.default_rng(2).normal(size=d)
    m, q = ridge.mean_var(x, rows.astype(np.intp))
    want_m = ridge.theta[rows] @ x
    want_q = np.einsum("kij,i,j->k", ridge.A_inv[rows], x, x)
    # Same sums in a different order: agreement to rounding (1e-12 relative on O(1) values).
    np.testing.assert_allclose(m, want_m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q, want_q, rtol=1e-12, atol=1e-12)
