"""LinUCB's float32 scoring rule: float32 widths, float64 rescoring of the arms that may win.

:func:`ucb_float32_numpy` is the reference implementation; the compiled kernel
(:func:`._ridge_numba.ucb_float32`) follows the same rule, and :mod:`._kernels` picks one of the
two. Both are fed by :class:`~bandit_engine.policies._packed.PackedRows` blocks in float32
precision (see :meth:`~bandit_engine.policies._packed.PackedRows.mean_var_bounded` for the
bound on the float32 widths).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ._arrays import FloatArray, IntArray

__all__ = ["ucb_float32_numpy"]


def ucb_float32_numpy(
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
    """LinUCB scores ``theta . x + alpha sqrt(x' A^{-1} x)`` from float32 widths ``q32``, with
    every arm whose exact score could reach the tie set of the best one rescored in float64 from
    the full matrices, written to ``scores``. The argmax and its ties are therefore those of
    the float64 scores.

    ``theta``, ``q32`` and ``sdiag = sqrt(diag A^{-1})`` are the block rows of the candidates
    (``rows`` their rows in ``a_inv`` and ``n_obs``; a row never updated holds the prior
    ``I * prior_inv``). A width ``q`` within ``e = err_rel (sdiag . |x|)^2 + err_abs (2 l2_inv
    + 2 max(x^2) + 1)`` of the exact one puts the score within
    ``h = alpha min(e / sqrt(q), sqrt(e))`` of its exact value (``sqrt`` is concave); the exact
    best is at least ``max(score - h)``, so the arms with
    ``score + h >= max(score - h) - tie_rtol max(1, |.|)`` are all that can tie with it.
    Returns False, with every score written and none rescored, when that maximum is not finite
    (a non-finite score: the caller's argmax reports it).
    """
    big = float(np.abs(x).max())
    err_abs = float(err_abs * (2.0 * l2_inv + 2.0 * big * big + 1.0))
    k = q32.shape[0]
    m = theta[:k] @ x
    q = q32.astype(np.float64)
    np.maximum(q, 0.0, out=q)
    e = sdiag[:k] @ np.abs(x)
    e *= e
    e *= err_rel
    e += err_abs
    sq = np.sqrt(q)
    np.multiply(sq, alpha, out=scores)
    scores += m
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.minimum(e / sq, np.sqrt(e))
    h *= alpha
    top = float((scores - h).max())
    if not math.isfinite(top):
        return False
    near = np.flatnonzero(scores + h >= top - tie_rtol * max(1.0, abs(top)))
    exact = np.empty(near.shape[0])
    prior = -1.0
    for i, r in enumerate(rows[near].tolist()):
        if n_obs[r] == 0:  # never updated: A^{-1} = I / l2
            if prior < 0.0:
                prior = float(x @ x) * prior_inv
            exact[i] = prior
        else:
            exact[i] = max(float((a_inv[r] @ x) @ x), 0.0)
    np.sqrt(exact, out=exact)
    exact *= alpha
    exact += m[near]
    scores[near] = exact
    return True
