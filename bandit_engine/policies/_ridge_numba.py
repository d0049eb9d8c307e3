"""Compiled helpers of the ridge statistics and their packed scoring (optional).

Imported by :mod:`._kernels` only when ``numba`` is installed (extra ``fast``) and
``BANDIT_ENGINE_NO_NUMBA`` is not set; otherwise the numpy twins there run. Each kernel does
the same floating-point operations in the same order as its numpy twin (no ``fastmath``, so no
reassociation or fused multiply-adds), so both give bit-identical results; what they save is
the per-call overhead of the half-dozen small numpy operations each replaces.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from ._arrays import FloatArray, IntArray

__all__ = ["pack_rows", "rank1_learn", "tri_products", "ucb_float32"]


@njit(cache=True)
def tri_products(x: FloatArray, out: NDArray[Any]) -> None:
    """``out`` = the packed outer product of ``x``: ``(x_i * x_j) * c`` for ``i <= j`` in row
    order, ``c = 1`` on the diagonal and 2 off it, rounded to ``out``'s dtype as ``astype``
    would (the same operations as its numpy twin in :mod:`._kernels`)."""
    d = x.shape[0]
    t = 0
    for i in range(d):
        xi = x[i]
        out[t] = (xi * xi) * 1.0
        t += 1
        for j in range(i + 1, d):
            out[t] = (xi * x[j]) * 2.0
            t += 1


@njit(cache=True)
def pack_rows(
    flat: FloatArray,
    theta: FloatArray,
    rows: IntArray,
    tri: IntArray,
    diag: IntArray,
    dst: NDArray[Any],
    dst_theta: FloatArray,
    sdiag: FloatArray,
    start: int,
) -> None:
    """For each ``i``: ``dst[start + i] = flat[rows[i]][tri]`` (cast to ``dst``'s dtype),
    ``dst_theta[start + i] = theta[rows[i]]`` and, when ``sdiag`` has rows,
    ``sdiag[start + i] = sqrt(max(flat[rows[i]][diag], 0))``."""
    n = tri.shape[0]
    d = diag.shape[0]
    with_diag = sdiag.shape[0] > 0
    for i in range(rows.shape[0]):
        r = rows[i]
        for t in range(n):
            dst[start + i, t] = flat[r, tri[t]]
        for j in range(d):
            dst_theta[start + i, j] = theta[r, j]
        if with_diag:
            for j in range(d):
                v = flat[r, diag[j]]
                sdiag[start + i, j] = math.sqrt(v) if v > 0.0 else 0.0


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dot(a: FloatArray, b: FloatArray) -> float:
    """``a . b`` in any order (vectorised): for bounds and float64 rescoring, where the order
    of a float64 sum does not matter."""
    acc = 0.0
    for j in range(a.shape[0]):
        acc += a[j] * b[j]
    return acc


@njit(cache=True)
def ucb_float32(
    theta: FloatArray,
    q32: NDArray[np.float32],
    sdiag: FloatArray,
    x: FloatArray,
    alpha: float,
    err_rel: float,
    err_abs: float,
    l2_inv: float,
    tie_rtol: float,
    a_inv: FloatArray,
    rows: IntArray,
    n_obs: NDArray[np.int64],
    prior_inv: float,
    scores: FloatArray,
) -> bool:
    """LinUCB scores from float32 widths, with float64 rescoring of the arms that may tie with
    the best (:func:`._linucb_float32.ucb_float32_numpy` describes the rule), written to
    ``scores``.

    ``theta``, ``q32`` and ``sdiag`` are the block rows of the candidates (``rows`` their rows
    in ``a_inv`` and ``n_obs``). Returns False, with every score written, when the best
    lower end ``max(score - h)`` is not finite. ``err_abs`` is scaled here by ``2 / l2 + 2 max(x^2) + 1`` (bounds on ``|S_ij|``
    and ``|w_t|``, as the numpy twin does)."""
    k = q32.shape[0]
    d = x.shape[0]
    ax = np.abs(x)
    big = 0.0
    for j in range(d):
        if ax[j] > big:
            big = ax[j]
    err_abs = err_abs * (2.0 * l2_inv + 2.0 * big * big + 1.0)
    m = np.empty(k)
    h = np.empty(k)
    top = -math.inf
    finite = True
    for a in range(k):
        ma = _dot(theta[a], x)
        qa = float(q32[a])
        if qa < 0.0:
            qa = 0.0
        sd = _dot(sdiag[a], ax)
        e = err_rel * sd * sd + err_abs
        sq = math.sqrt(qa)
        s = ma + alpha * sq
        scores[a] = s
        m[a] = ma
        if s != s:  # NaN: max(score - h) is NaN for numpy too
            finite = False
        half = math.sqrt(e)
        if sq > 0.0 and e / sq < half:
            half = e / sq
        half *= alpha
        h[a] = half
        if s - half > top:
            top = s - half
    if not finite or not math.isfinite(top):
        return False
    thr = top - tie_rtol * max(1.0, abs(top))
    prior = -1.0
    for a in range(k):
        if scores[a] + h[a] < thr:
            continue
        r = rows[a]
        if n_obs[r] == 0:  # never updated: A^{-1} = I / l2
            if prior < 0.0:
                prior = _dot(x, x) * prior_inv
            qa = prior
        else:
            qa = 0.0
            for i in range(d):
                qa += _dot(a_inv[r, i], x) * x[i]
            if qa < 0.0:
                qa = 0.0
        scores[a] = m[a] + alpha * math.sqrt(qa)
    return True


@njit(cache=True)
def rank1_learn(
    a_inv: FloatArray, b: FloatArray, theta: FloatArray, x: FloatArray, reward: float
) -> bool:
    """One ridge observation without forgetting, in place: ``b += reward x``, Sherman–Morrison
    ``A^{-1} -= u u' / (1 + x' u)`` with ``u = A^{-1} x``, ``theta = A^{-1} b``. Returns False,
    changing nothing, when ``1 + x' u`` is not finite (bad ``x``).

    Each element of ``A^{-1}`` becomes ``a_ij - c (u_i u_j)`` rounded the same way for
    ``(i, j)`` and ``(j, i)``, so symmetry is kept bit for bit; the dot products (``u``,
    ``x' u``, ``theta``) are summed in a vectorised order, so the results agree with the BLAS
    path to rounding, not bit for bit."""
    d = x.shape[0]
    u = np.empty(d)
    for i in range(d):
        u[i] = _dot(a_inv[i], x)
    den = 1.0 + _dot(x, u)
    if not math.isfinite(den):
        return False
    c = -1.0 / den
    for i in range(d):
        b[i] += reward * x[i]
    for i in range(d):
        # c (u_i u_j) for every j: u_i u_j is symmetric, so is its product with c
        theta[i] = _downdate_row_sym(a_inv[i], c, u[i], u, b)
    return True


@njit(cache=True)
def _downdate_row_sym(row: FloatArray, c: float, ui: float, u: FloatArray, b: FloatArray) -> float:
    """``row[j] += c * (ui * u[j])`` for every ``j`` (no fastmath here: each element is one
    product of the symmetric ``ui * u[j]``, one product with ``c`` and one sum, never
    reassociated); returns the new ``row . b`` (:func:`_dot`, any order)."""
    for j in range(row.shape[0]):
        row[j] = row[j] + c * (ui * u[j])
    return _dot(row, b)
