"""Compiled kernels of disjoint Thompson sampling: the draw and its propensity (optional).

Imported by :mod:`._kernels` only when ``numba`` is installed (extra ``fast``) and
``BANDIT_ENGINE_NO_NUMBA`` is not set; otherwise the numpy implementation of the propensity in
:mod:`._ts_propensity` runs. Both follow the same rule (same range guess and
widening, same tail bounds, same dropped competitors, same panels, nodes and breakpoints); the
kernel differs in two ways that keep it within the documented error budget:

* at each node it also skips the competitors whose factor there is ``>= Phi(6.5) = 1 - 4.0e-11``
  (the rule applied per node instead of once for the whole range), so each node costs only the
  competitors that matter at it;
* ``Phi`` comes from a table at spacing ``1/32`` with its degree-6 Taylor expansion (derivatives
  of ``Phi`` are Hermite polynomials times ``phi``): relative error below ``1e-11`` for
  ``x >= -6``, ``5e-10`` down to ``x = -10`` (``Phi < 8e-24``: such a factor makes its node
  negligible) and ``1e-7`` down to ``x = -20``; ``Phi = 1`` above 8.5 and 0 below -40.

The two implementations agree to about ``1e-9`` relative (tested). numba compiles the kernel on
first use (a few seconds) and caches it next to this file.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.polynomial.hermite_e import hermeval
from scipy.special import ndtr

from ._arrays import FloatArray

__all__ = [
    "PHI_TABLE",
    "choose_disjoint",
    "phi_cdf",
    "prob_max_normal_kernel",
    "sample_scores",
]

_X_MIN, _X_MAX, _STEPS = -40.0, 8.5, 32.0
_TAYLOR = 7  # Phi and its first 6 derivatives


def _phi_table() -> FloatArray:
    """Row ``i``: Taylor coefficients of ``Phi`` at ``x_i = -40 + i / 32``."""
    xs = _X_MIN + np.arange(int((_X_MAX - _X_MIN) * _STEPS) + 2) / _STEPS
    dens = np.exp(-0.5 * xs * xs) / math.sqrt(2.0 * math.pi)
    table = np.empty((xs.shape[0], _TAYLOR))
    table[:, 0] = ndtr(xs)
    factorial = 1.0
    for k in range(1, _TAYLOR):
        factorial *= k
        he = np.zeros(k)
        he[k - 1] = 1.0  # d^k Phi / dx^k = (-1)^(k-1) He_{k-1}(x) phi(x)
        table[:, k] = dens * (-1.0) ** (k - 1) * hermeval(xs, he) / factorial
    return table


PHI_TABLE = np.ascontiguousarray(_phi_table().ravel())  # row i at [7 i, 7 i + 7)


@njit(cache=True)
def phi_cdf(x: float, table: FloatArray) -> float:
    """The standard normal CDF from the flattened Taylor table (see the module notes)."""
    if x >= 8.5:
        return 1.0
    if x <= -40.0:
        return 0.0
    i = int((x + 40.0) * 32.0 + 0.5)
    d = x - (-40.0 + i * 0.03125)
    j = i * 7
    return float(
        table[j]
        + d
        * (
            table[j + 1]
            + d
            * (
                table[j + 2]
                + d * (table[j + 3] + d * (table[j + 4] + d * (table[j + 5] + d * table[j + 6])))
            )
        )
    )


@njit(cache=True)
def _tail(g_edge: float, g_inner: float, gap: float) -> tuple[float, float]:
    if g_edge <= 0.0:
        return 0.0, math.inf
    if g_inner <= g_edge:
        return math.inf, 0.0
    rate = math.log(g_inner / g_edge) / gap
    return g_edge / rate, rate


@njit(cache=True)
def _widen(tail: float, rate: float, budget: float, panel: float) -> int:
    if rate <= 0.0 or not math.isfinite(tail):
        return 2
    return max(1, math.ceil(math.log(tail / budget) / rate / panel))


@njit(cache=True)
def _integrate(
    u: FloatArray,
    r: FloatArray,
    p0: int,
    p1: int,
    prm: FloatArray,
    edges: FloatArray,
    nodes: FloatArray,
    wq_grid: FloatArray,
    wphi_grid: FloatArray,
    grid_narrow: FloatArray,
    gl_x: FloatArray,
    gl_w: FloatArray,
    table: FloatArray,
) -> tuple[float, float, float, float, float]:
    panel_nodes, relevant_sds, narrow_below = int(prm[0]), prm[1], prm[2]
    z_lo, z_hi = edges[p0], edges[p1]
    k = u.shape[0]
    # Relevant competitors, sorted by reach u + 6.5 r (descending) so a node stops at the first
    # competitor that no longer reaches it.
    reach = np.empty(k)
    which = np.empty(k, np.int64)
    m = 0
    any_narrow = False
    for b in range(k):
        rb = u[b] + relevant_sds * r[b]
        if rb > z_lo:
            reach[m] = rb
            which[m] = b
            m += 1
            if r[b] < narrow_below:
                any_narrow = True
    order = np.argsort(-reach[:m])
    us = np.empty(m)
    inv_r = np.empty(m)
    rs = np.empty(m)
    for j in range(m):
        b = which[order[j]]
        us[j] = u[b]
        inv_r[j] = 1.0 / r[b]
        rs[j] = reach[order[j]]
    if any_narrow:
        n_unit = int(z_hi - z_lo + 0.5) + 1
        bp = np.empty(n_unit + m * grid_narrow.shape[0])
        c = 0
        for i in range(n_unit):
            bp[c] = z_lo + i
            c += 1
        for j in range(m):
            if 1.0 / inv_r[j] < narrow_below:
                for g in grid_narrow:
                    v = us[j] + g / inv_r[j]
                    if z_lo <= v <= z_hi:
                        bp[c] = v
                        c += 1
        bp = np.unique(bp[:c])
        n_gl = gl_x.shape[0]
        n = (bp.shape[0] - 1) * n_gl
        t = np.empty(n)
        wq = np.empty(n)
        w = np.empty(n)
        for i in range(bp.shape[0] - 1):
            half = 0.5 * (bp[i + 1] - bp[i])
            for q in range(n_gl):
                tt = bp[i] + half * (gl_x[q] + 1.0)
                t[i * n_gl + q] = tt
                wq[i * n_gl + q] = half * gl_w[q]
                w[i * n_gl + q] = half * gl_w[q] * math.exp(-0.5 * tt * tt) * 0.3989422804014327
    else:
        t = nodes[p0 * panel_nodes : p1 * panel_nodes]
        wq = wq_grid[p0 * panel_nodes : p1 * panel_nodes]
        w = wphi_grid[p0 * panel_nodes : p1 * panel_nodes]
    n = t.shape[0]
    # Competitor by competitor over the nodes it reaches (t ascending, reach descending, so
    # that set only shrinks): independent multiplications, unlike a product per node.
    acc = w.copy()
    top = n
    for q in range(m):
        reach_q, u_q, inv_q = rs[q], us[q], inv_r[q]
        while top > 0 and t[top - 1] >= reach_q:
            top -= 1
        for j in range(top):
            v = acc[j] * phi_cdf((t[j] - u_q) * inv_q, table)
            acc[j] = v if v > 1e-290 else 0.0  # no subnormal arithmetic in the far tails
    total = 0.0
    for j in range(n):
        total += acc[j]
    g0, g1 = acc[0] / wq[0], acc[1] / wq[1]
    gm, gn = acc[n - 2] / wq[n - 2], acc[n - 1] / wq[n - 1]
    tail_lo, rate_lo = _tail(g0, g1, t[1] - t[0])
    tail_hi, rate_hi = _tail(gn, gm, t[n - 1] - t[n - 2])
    return total, tail_lo, rate_lo, tail_hi, rate_hi


@njit(cache=True)
def prob_max_normal_kernel(
    mu: FloatArray,
    sd: FloatArray,
    a: int,
    prm: FloatArray,
    edges: FloatArray,
    nodes: FloatArray,
    wq_grid: FloatArray,
    wphi_grid: FloatArray,
    grid_narrow: FloatArray,
    gl_x: FloatArray,
    gl_w: FloatArray,
    table: FloatArray,
) -> float:
    """``prob_max_normal`` for ``k >= 3`` arms; ``prm`` holds the rule's constants (see
    :data:`._ts_propensity.KERNEL_PARAMS`)."""
    zmax, panel, lo_sds, p_hi_start, tail_tol = prm[3], prm[4], prm[5], int(prm[6]), prm[7]
    n_panels = edges.shape[0] - 1
    k = mu.shape[0]
    ma = mu[a]
    inv = 1.0 / sd[a]
    u = np.empty(k)
    r = np.empty(k)
    lo = -zmax
    for b in range(k):
        u[b] = (mu[b] - ma) * inv
        r[b] = sd[b] * inv
    u[a] = -math.inf
    for b in range(k):
        v = u[b] - lo_sds * r[b]
        if v > lo:
            lo = v
    if lo >= zmax:
        return 0.0
    p0 = int((lo + zmax) // panel)
    p1 = max(p_hi_start, p0 + 1)
    while True:
        total, tail_lo, rate_lo, tail_hi, rate_hi = _integrate(
            u, r, p0, p1, prm, edges, nodes, wq_grid, wphi_grid, grid_narrow, gl_x, gl_w, table
        )
        budget = 0.5 * tail_tol * total
        widen_lo = p0 > 0 and not tail_lo <= budget
        widen_hi = p1 < n_panels and not tail_hi <= budget
        if not (widen_lo or widen_hi):
            return total
        if widen_lo:
            p0 = max(0, p0 - _widen(tail_lo, rate_lo, budget, panel))
        if widen_hi:
            p1 = min(n_panels, p1 + _widen(tail_hi, rate_hi, budget, panel))


@njit(cache=True)
def sample_scores(m: FloatArray, q: FloatArray, z: FloatArray, v: float) -> int:
    """Disjoint Thompson sampling's draw, in place and in the order numpy does it: ``q`` becomes
    ``sd = max(v sqrt(q), 1e-12 max(1, max |m|))``, ``z`` (standard normals) becomes the scores
    ``z sd + m``; returns their argmax (the first one; the first NaN if any, as ``argmax``)."""
    k = m.shape[0]
    top = 1.0
    for i in range(k):
        a = abs(m[i])
        if a > top:
            top = a
    floor = 1e-12 * top
    best = 0
    best_val = -math.inf
    for i in range(k):
        s = math.sqrt(q[i]) * v
        if s < floor:  # NaN stays NaN, as with np.maximum
            s = floor
        q[i] = s
        val = z[i] * s + m[i]
        z[i] = val
        if val != val:
            return i
        if val > best_val or i == 0:
            best, best_val = i, val
    return best


@njit(cache=True)
def choose_disjoint(
    m: FloatArray,
    q: FloatArray,
    z: FloatArray,
    v: float,
    prm: FloatArray,
    edges: FloatArray,
    nodes: FloatArray,
    wq_grid: FloatArray,
    wphi_grid: FloatArray,
    grid_narrow: FloatArray,
    gl_x: FloatArray,
    gl_w: FloatArray,
    table: FloatArray,
) -> tuple[int, float]:
    """A whole epsilon-free disjoint TS decision in one call: :func:`sample_scores`, then the
    probability that the argmax wins (``prob_max_normal``; NaN when its score is not finite)."""
    index = sample_scores(m, q, z, v)
    if not math.isfinite(z[index]):
        return index, math.nan
    k = m.shape[0]
    if k == 1:
        return index, 1.0
    if k == 2:
        b = 1 - index
        gap = (m[index] - m[b]) / math.hypot(q[index], q[b])
        return index, 0.5 * math.erfc(-gap / math.sqrt(2.0))
    p = prob_max_normal_kernel(
        m, q, index, prm, edges, nodes, wq_grid, wphi_grid, grid_narrow, gl_x, gl_w, table
    )
    return index, p
