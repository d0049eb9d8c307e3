"""The exact propensity of disjoint Thompson sampling: ``P(S_a is the largest)`` by quadrature.

For independent ``S_b ~ N(mu_b, sd_b^2)`` (``sd > 0``), :func:`prob_max_normal_numpy` computes
``P(S_a > S_b for all b != a)``.

Two arms: the closed form ``Phi((mu_a - mu_b) / sqrt(sd_a^2 + sd_b^2))``. More arms: the
integral ``int phi(z) prod_{b != a} Phi((z - u_b) / r_b) dz`` in units of arm ``a``
(``u_b = (mu_b - mu_a) / sd_a``, ``r_b = sd_b / sd_a``) by composite Gauss–Legendre
quadrature on a fixed grid of panels of width 2 (11 nodes each, weights precomputed), or,
when a relevant competitor is narrower than ``sd_a / 2``, on unit intervals plus breakpoints
at ``u_b + r_b * {0, +-2, +-4, +-6, +-8.5}`` of each narrow competitor (5 nodes each), so that
no interval is wide compared with a normal acting in it.

Error budget (relative to the result):

* range: the integrand is log-concave (a product of log-concave functions), so beyond the
  outermost nodes it lies below the exponential through the last two node values; the range
  starts at ``[max(-9, max_b(u_b - 4 r_b)), 7]`` and is widened panel by panel until those
  two tail bounds sum to at most ``1e-9`` of the result (or reach ``+-9``, beyond which the
  integrand is below ``phi(9) ~ 1e-18``);
* dropped competitors: those with ``u_b + 6.5 r_b`` below the range have
  ``Phi_b >= 1 - 4.0e-11`` on it; dropping them overstates the result by at most
  ``4.0e-11`` relative each (``2e-9`` for 50 arms);
* quadrature (measured, not bounded): against adaptive quadrature (QUADPACK) and the two-arm
  closed form, states of trained 50-arm policies at most ``2.3e-7`` relative (median
  ``1e-12``); worst seen ``3e-4`` relative, for a probability near ``5e-6`` with 30
  competitors of half the chosen arm's width at the same place 3.5 sd above it (their joint
  maximum is much sharper than each of them; with 10 such competitors ``1e-5``).

Plain Gauss–Hermite on arm ``a``'s normal was rejected: when competitors are much narrower
than ``a`` (a new bundle against well-trained ones, the usual cold-start situation),
``prod Phi_b`` is nearly a step between Hermite nodes and 48 nodes err by up to 0.06
absolute (``sd_b / sd_a = 0.02``); on trained states 64 Hermite nodes still err by ``1e-5``
for small probabilities. Cost: about ``(nodes) x (relevant competitors)`` normal CDFs
(scipy's ``ndtr``, ~20 ns each), typically 40-70 nodes; see ``benchmarks/bench_engine.py``.

This module is the reference (numpy) implementation of the rule. The compiled kernel in
:mod:`._ts_numba` follows the same rule with the constants exported here
(:data:`KERNEL_PARAMS`, :data:`KERNEL_GRIDS`); :mod:`._kernels` picks one of the two.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ._arrays import FloatArray

__all__ = ["KERNEL_GRIDS", "KERNEL_PARAMS", "prob_max_normal_numpy"]

# The rule works in units of the chosen arm: z = (t - mu_a) / sd_a, so arm a's density is
# the standard normal phi(z) and competitor b becomes Phi((z - u_b) / r_b).
_ZMAX = 9.0  # phi(9) ~ 1e-18: the integration never reaches beyond +-9 sd of arm a
# Fast path: a fixed composite Gauss–Legendre grid of panels of width 2 with 11 nodes each (nodes
# and phi-weights precomputed), sliced to the range in use.
_PANEL = 2.0
_PANEL_NODES = 11
_EDGES = np.arange(-_ZMAX, _ZMAX + 0.5 * _PANEL, _PANEL)
_N_PANELS = _EDGES.shape[0] - 1
_PX, _PW = np.polynomial.legendre.leggauss(_PANEL_NODES)
_T = (_EDGES[:-1, None] + 0.5 * _PANEL * (_PX + 1.0)).ravel()
_WQ = np.tile(0.5 * _PANEL * _PW, _N_PANELS)  # plain quadrature weights
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_WPHI = _WQ * np.exp(-0.5 * _T * _T) * _INV_SQRT_2PI  # weights times phi
# Narrow path (a relevant competitor narrower than _NARROW sd_a): breakpoints at every unit and,
# for each narrow competitor, at u_b + r_b * _GRID_NARROW; 5 Legendre nodes per interval
# (6 measured no more accurate on trained states or the accuracy tests).
_NARROW = 0.5
_GRID_NARROW = np.array([-8.5, -6, -4, -2, 0, 2, 4, 6, 8.5], dtype=float)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(5)
# Range: start at [max(-9, max_b(u_b - 4 r_b)), 7] (a guess) and widen panel by panel until the
# tail bounds below are within _TAIL_TOL of the result.
_LO_SDS = 4.0
_HI_START = 7.0
_TAIL_TOL = 1e-9
_P_HI_START = math.ceil((_HI_START + _ZMAX) / _PANEL)  # first panel above the start range
# Competitors with u_b + 6.5 r_b below the range have Phi_b >= 1 - 4.0e-11 on it and are dropped.
_RELEVANT_SDS = 6.5


def _tail(g_edge: float, g_inner: float, gap: float) -> tuple[float, float]:
    """Bound on the integral of a log-concave ``g`` beyond a node where it is ``g_edge``, given
    its value ``g_inner`` at the neighbouring node ``gap`` further in, and the decay rate of the
    bound: ``(bound, rate)``, ``(inf, 0)`` if ``g`` does not decrease outwards there."""
    if g_edge <= 0.0:
        return 0.0, math.inf
    if g_inner <= g_edge:
        return math.inf, 0.0
    # Outwards, log g lies below its chord through the two nodes (concavity): an exponential
    # with this rate, whose integral beyond the node is g_edge / rate.
    rate = math.log(g_inner / g_edge) / gap
    return g_edge / rate, rate


def _widen(tail: float, rate: float, budget: float) -> int:
    """Panels to add on a side whose tail bound ``tail`` (decaying at ``rate``) exceeds
    ``budget``: enough for the bound's own extrapolation to meet it, at least one."""
    if rate <= 0.0 or not math.isfinite(tail):
        return 2
    return max(1, math.ceil(math.log(tail / budget) / rate / _PANEL))


def _integrate(
    u: FloatArray, r: FloatArray, p0: int, p1: int
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Quadrature of ``phi(z) prod_b Phi((z - u_b) / r_b)`` over panels ``p0 .. p1-1`` of the
    fixed grid (refined around narrow competitors); returns ``(integral, lower tail, upper
    tail)``, each tail as :func:`_tail` gives it."""
    z_lo = float(_EDGES[p0])
    keep = u + _RELEVANT_SDS * r > z_lo
    uk, rk = u[keep], r[keep]
    narrow = rk < _NARROW
    if np.any(narrow):
        z_hi = float(_EDGES[p1])
        bp = np.concatenate(
            [
                np.arange(z_lo, z_hi + 0.5),
                (uk[narrow, None] + rk[narrow, None] * _GRID_NARROW).ravel(),
            ]
        )
        bp = np.unique(bp[(bp >= z_lo) & (bp <= z_hi)])
        half = 0.5 * np.diff(bp)
        t = (bp[:-1, None] + half[:, None] * (_GL_X + 1.0)).ravel()
        wq = (half[:, None] * _GL_W).ravel()
        w = wq * np.exp(-0.5 * t * t) * _INV_SQRT_2PI
    else:
        t = _T[p0 * _PANEL_NODES : p1 * _PANEL_NODES]
        wq = _WQ[p0 * _PANEL_NODES : p1 * _PANEL_NODES]
        w = _WPHI[p0 * _PANEL_NODES : p1 * _PANEL_NODES]
    if uk.shape[0]:
        inv_r = 1.0 / rk
        # Competitors along axis 0: the product then runs over contiguous rows (fast in numpy).
        cdf = np.multiply.outer(inv_r, t)
        cdf -= (uk * inv_r)[:, None]
        dens = ndtr(cdf, out=cdf).prod(axis=0)
        dens *= w
    else:
        dens = w.copy()
    n = dens.shape[0]
    g0, g1 = float(dens[0] / wq[0]), float(dens[1] / wq[1])
    gm, gn = float(dens[n - 2] / wq[n - 2]), float(dens[n - 1] / wq[n - 1])
    return (
        float(dens.sum()),
        _tail(g0, g1, float(t[1] - t[0])),
        _tail(gn, gm, float(t[n - 1] - t[n - 2])),
    )


def prob_max_normal_numpy(mu: FloatArray, sd: FloatArray, a: int) -> float:
    """``P(S_a > S_b for all b != a)`` by the rule of this module, in numpy (the reference
    implementation; :func:`bandit_engine.policies.thompson.prob_max_normal` uses it when numba
    is not installed or switched off)."""
    k = mu.shape[0]
    if k == 1:
        return 1.0
    ma, sa = float(mu[a]), float(sd[a])
    if k == 2:
        b = 1 - a
        gap = (ma - float(mu[b])) / math.hypot(sa, float(sd[b]))
        return 0.5 * math.erfc(-gap / math.sqrt(2.0))
    inv = 1.0 / sa
    u = mu - ma
    u *= inv
    r = sd * inv
    u[a] = -math.inf  # a is not its own competitor: it is never relevant and sets no bound
    lo = max(float((u - _LO_SDS * r).max()), -_ZMAX)
    if lo >= _ZMAX:
        return 0.0
    p0 = int((lo + _ZMAX) // _PANEL)
    p1 = max(_P_HI_START, p0 + 1)
    while True:
        total, (tail_lo, rate_lo), (tail_hi, rate_hi) = _integrate(u, r, p0, p1)
        budget = 0.5 * _TAIL_TOL * total
        widen_lo = p0 > 0 and not tail_lo <= budget
        widen_hi = p1 < _N_PANELS and not tail_hi <= budget
        if not (widen_lo or widen_hi):
            return total
        if widen_lo:
            p0 = max(0, p0 - _widen(tail_lo, rate_lo, budget))
        if widen_hi:
            p1 = min(_N_PANELS, p1 + _widen(tail_hi, rate_hi, budget))


#: The rule's constants in the order :func:`._ts_numba.prob_max_normal_kernel` reads them.
KERNEL_PARAMS: FloatArray = np.array(
    [
        _PANEL_NODES,
        _RELEVANT_SDS,
        _NARROW,
        _ZMAX,
        _PANEL,
        _LO_SDS,
        _P_HI_START,
        _TAIL_TOL,
    ],
    dtype=np.float64,
)
#: The kernel's grids after :data:`KERNEL_PARAMS`: panel edges, nodes, plain and phi weights,
#: the narrow-competitor breakpoints and the 5-node Legendre rule.
KERNEL_GRIDS: tuple[FloatArray, ...] = (_EDGES, _T, _WQ, _WPHI, _GRID_NARROW, _GL_X, _GL_W)
