"""Linear Thompson sampling (Agrawal & Goyal, ICML 2013), disjoint or shared.

The posterior of a ridge regression with design ``A`` and estimate ``theta_hat = A^{-1} b`` is
taken as ``N(theta_hat, v^2 A^{-1})``; each decision samples from it and plays the argmax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from scipy.special import ndtr

from ..errors import ValidationError
from ..records import Choice
from ._optional import compiled_module
from ._ridge import RidgeArmsPolicy, RidgeRows
from .base import (
    TIE_RTOL,
    ArmTable,
    FloatArray,
    SeedLike,
    check_choice,
    check_in_range,
    check_int,
    check_positive,
)

__all__ = ["PROPENSITY_FLOOR", "LinearTS", "prob_max_normal", "prob_max_normal_numpy"]

#: Smallest propensity Thompson sampling reports (before epsilon mixing). Quadrature can return
#: 0 (or a rounding-level negative) for an arm that won a draw with tiny probability; IPS needs
#: a positive number, and a weight above 1e12 would dominate any estimate anyway.
PROPENSITY_FLOOR = 1e-12

# prob_max_normal works in units of the chosen arm: z = (t - mu_a) / sd_a, so arm a's density is
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


def prob_max_normal(mu: FloatArray, sd: FloatArray, a: int) -> float:
    """``P(S_a > S_b for all b != a)`` for independent ``S_b ~ N(mu_b, sd_b^2)`` (``sd > 0``).

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

    With ``numba`` installed (extra ``fast``) a compiled kernel applies the same rule, skipping
    per node the competitors whose factor there is ``>= 1 - 4.0e-11`` and taking ``Phi`` from a
    Taylor table (see :mod:`bandit_engine.policies._ts_numba`): about 4x faster, agreeing with
    :func:`prob_max_normal_numpy` to ~1e-9 relative. Set ``BANDIT_ENGINE_NO_NUMBA=1`` to use the
    numpy implementation regardless.
    """
    k = mu.shape[0]
    if k == 1:
        return 1.0
    if k == 2:
        ma, mb = float(mu[a]), float(mu[1 - a])
        gap = (ma - mb) / math.hypot(float(sd[a]), float(sd[1 - a]))
        return 0.5 * math.erfc(-gap / math.sqrt(2.0))
    kernel = _KERNEL if _KERNEL is not None else _load_kernel()
    if kernel:
        fn, args = kernel[0], kernel[1]
        return float(
            fn(
                np.ascontiguousarray(mu, dtype=np.float64),
                np.ascontiguousarray(sd, dtype=np.float64),
                int(a),
                *args,
            )
        )
    return prob_max_normal_numpy(mu, sd, a)


# The compiled kernels: None until first needed, then (propensity function, its constant
# arguments, sampling function, fused sampling + propensity function) or False.
_KERNEL: Any = None


def _load_kernel() -> Any:
    global _KERNEL
    _ts_numba = compiled_module("_ts_numba")
    if _ts_numba is None:
        _KERNEL = False
        return _KERNEL
    params = np.array(
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
    args = (params, _EDGES, _T, _WQ, _WPHI, _GRID_NARROW, _GL_X, _GL_W, _ts_numba.PHI_TABLE)
    _KERNEL = (
        _ts_numba.prob_max_normal_kernel,
        args,
        _ts_numba.sample_scores,
        _ts_numba.choose_disjoint,
    )
    return _KERNEL


def prob_max_normal_numpy(mu: FloatArray, sd: FloatArray, a: int) -> float:
    """:func:`prob_max_normal` in numpy (the reference implementation of the rule; used when
    numba is not installed)."""
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


class LinearTS(RidgeArmsPolicy):
    """Linear Thompson sampling with exact propensities.

    Parameters
    ----------
    v
        Posterior scale: ``theta ~ N(theta_hat, v^2 A^{-1})`` (``> 0``).
    l2
        Ridge prior ``A = l2*I`` (``> 0``).
    epsilon
        Probability of a uniformly random choice instead of the sampled argmax, in ``[0, 1]``.
    mode
        ``"disjoint"``: one regression per arm on ``x`` (dimension ``d``), independent
        posteriors. ``"shared"``: one regression for all arms on
        ``phi(x, z) = vec(outer(x, z))`` (dimension ``d * p``; ``A^{-1}`` is ``(d p)^2`` floats,
        an update costs ``O((d p)^2)``), so bundles share what they teach through their
        features and a new bundle is scored from its features alone. There is no per-bundle
        term: when the linear model in ``phi`` is misspecified, a bundle it under-rates is
        corrected only slowly by its own rewards (``HybridLinUCB`` has a per-bundle part).
    propensity_samples
        Shared mode only: number ``M`` of posterior draws per decision (``>= 1``).
    discount, window
        Optional forgetting, as in :class:`~bandit_engine.policies.linucb.LinUCB` (in shared
        mode it applies to the single shared regression).
    seed
        Seed or ``numpy.random.Generator``.

    Notes
    -----
    *Disjoint mode.* The arms' posteriors are independent, so drawing each arm's scalar score
    ``s_a ~ N(theta_hat_a . x, v^2 x' A_a^{-1} x)`` is exactly Thompson sampling and costs the
    same as LinUCB. The propensity of the chosen arm is ``P(s_a is the largest)``, computed by
    :func:`prob_max_normal` (quadrature; no extra sampling), floored at
    :data:`PROPENSITY_FLOOR` and mixed with epsilon: ``(1 - epsilon) * P + epsilon / k``.
    Standard deviations are floored at ``1e-12 * max(1, max |mean|)`` so that a zero context
    (all variances 0) still gives a proper distribution (uniform by symmetry). ``choose``
    computes only the chosen arm's probability (``Choice.probabilities`` is ``None``);
    :meth:`probabilities` returns all of them (``k`` quadratures).

    *Shared mode.* Scores are correlated (``Cov = v^2 Phi A^{-1} Phi'``), so the winning
    probability has no cheap closed form. Each decision draws ``M`` joint samples of the ``k``
    scores, picks one of the ``M`` uniformly and plays its argmax (ties uniformly); the
    propensity is the share of the ``M`` samples the chosen arm won (ties split), i.e. the
    exact probability of the choice *given the drawn samples*. IPS stays unbiased with it: the
    draws are independent of the reward, so conditionally on them the decision is an ordinary
    randomised policy with known probabilities, and ``E[r 1{A=a} / p(a | draws)]`` is the
    expected reward of ``a`` whenever ``p(a | draws) > 0``. Arms that won no draw get
    probability 0 unless ``epsilon > 0`` (then ``>= epsilon / k``), so target policies that
    might pick them are only evaluable with epsilon mixing. The conditional distribution is
    returned in ``Choice.probabilities``; :meth:`probabilities` returns ``None`` (no exact
    marginal). Samples use the ``p x p`` matrix ``C = (x ⊗ I)' A^{-1} (x ⊗ I)``: with ``Z``
    the ``(k, p)`` arm features, ``Phi A^{-1} Phi' = Z C Z'``, so ``s = mu + v Z chol(C) e``
    has exactly the right law without a ``k x k`` (rank-deficient when ``k > p``) or
    ``dp x dp`` factorisation.
    """

    name = "lin_ts"
    _param_names = ("v", "l2", "epsilon", "mode", "propensity_samples", "discount", "window")

    def __init__(
        self,
        *,
        v: float = 1.0,
        l2: float = 1.0,
        epsilon: float = 0.0,
        mode: str = "disjoint",
        propensity_samples: int = 1000,
        discount: float | None = None,
        window: int | None = None,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(l2=l2, discount=discount, window=window, seed=seed)
        self.v = check_positive("v", v)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.mode = check_choice("mode", mode, ("disjoint", "shared"))
        self.propensity_samples = check_int("propensity_samples", propensity_samples, minimum=1)

    # -- disjoint mode ----------------------------------------------------------------------
    def _mean_sd(self, m: FloatArray, q: FloatArray) -> FloatArray:
        sd = np.sqrt(q, out=q)
        sd *= self.v
        floor = 1e-12 * max(1.0, float(np.abs(m).max()))
        np.maximum(sd, floor, out=sd)
        return sd

    def _mix(self, p: float, k: int) -> float:
        p = min(max(p, PROPENSITY_FLOOR), 1.0)
        return (1.0 - self.epsilon) * p + self.epsilon / k

    def choose(self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray) -> Choice:
        if self.mode == "shared":
            return self._choose_shared(x, arms, arm_features)
        x, ridge, rows = self._prepare(x, arms, arm_features)
        m, q = ridge.mean_var(x, rows)
        k = m.shape[0]
        scores = cast(FloatArray, self.rng_.standard_normal(k))
        kernel = _KERNEL if _KERNEL is not None else _load_kernel()
        if kernel:
            # The same arithmetic in compiled code (saves ~5 numpy calls per decision); without
            # epsilon the propensity comes from the same call.
            if self.epsilon == 0.0:
                index, p = kernel[3](m, q, scores, self.v, *kernel[1])
                if not math.isfinite(float(scores[index])):
                    self._raise_nonfinite(x)
                    raise ValidationError.for_field("scores", "non-finite", "must be finite")
                return Choice(int(index), self._mix(float(p), k), scores, None)
            index = int(kernel[2](m, q, scores, self.v))
            sd = q
        else:
            sd = self._mean_sd(m, q)
            scores *= sd
            scores += m
            index = int(scores.argmax())
        if not math.isfinite(float(scores[index])):  # argmax lands on any NaN
            self._raise_nonfinite(x)
            raise ValidationError.for_field("scores", "non-finite", "must be finite")
        if self.epsilon > 0.0 and self.rng_.random() < self.epsilon:
            index = int(self.rng_.integers(k))
        propensity = self._mix(prob_max_normal(m, sd, index), k)
        return Choice(index, propensity, scores, None)

    def probabilities(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray | None:
        """Disjoint mode: every arm's choice probability by quadrature (``k`` of them, so
        ``O(k^2)`` normal CDFs; no randomness). Shared mode: ``None`` (see class notes)."""
        if self.mode == "shared":
            self._check_inputs(x, arms, arm_features)
            return None
        x, ridge, rows = self._lookup(x, arms, arm_features)
        m, q = ridge.mean_var(x, rows)
        if not math.isfinite(float(m.sum() + q.sum())):
            self._raise_nonfinite(x)
        sd = self._mean_sd(m, q)
        k = m.shape[0]
        return np.array([self._mix(prob_max_normal(m, sd, a), k) for a in range(k)])

    # -- shared mode ------------------------------------------------------------------------
    def _init_dims(self, d: int, p: int) -> None:
        if self.mode == "disjoint":
            super()._init_dims(d, p)
            return
        if p == 0:
            raise ValidationError.for_field(
                "arm_features", "0 columns", "must have >= 1 column in shared mode"
            )
        self.ridge_ = RidgeRows(d * p, self.l2, discount=self.discount, window=self.window)
        self.ridge_.ensure_rows(1)

    def _shared(self) -> RidgeRows:
        ridge = self.ridge_
        assert ridge is not None
        return ridge

    def _shared_moments(
        self, x: FloatArray, Z: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(mu, theta_mat, C)`` with ``mu = Z theta_mat' x`` and ``C`` the ``p x p`` matrix
        ``(x ⊗ I)' A^{-1} (x ⊗ I)``."""
        ridge = self._shared()
        d, p = x.shape[0], Z.shape[1]
        theta_mat = ridge.theta[0].reshape(d, p)
        mu = Z @ (x @ theta_mat)
        # A^{-1} indexed [i, j, k, l] for features x_i z_j and x_k z_l; contract i and k with x.
        T = (x @ ridge.A_inv[0].reshape(d, p * d * p)).reshape(p, d, p)
        C = np.einsum("jkl,k->jl", T, x)
        return mu, theta_mat, 0.5 * (C + C.T)

    @staticmethod
    def _sqrt_psd(C: FloatArray) -> FloatArray:
        """A factor ``L`` with ``L L' = C`` (Cholesky, or an eigen-factor when ``C`` is
        singular, e.g. for a zero context)."""
        try:
            return cast(FloatArray, np.linalg.cholesky(C))
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(C)
            return cast(FloatArray, V * np.sqrt(np.clip(w, 0.0, None)))

    def _choose_shared(self, x: FloatArray, arms: Sequence[str], Z: FloatArray) -> Choice:
        x, Z = self._check_inputs(x, arms, Z)
        mu, _, C = self._shared_moments(x, Z)
        if not (math.isfinite(float(mu.sum())) and math.isfinite(float(C.sum()))):
            self._raise_nonfinite(x, Z)
        k, M = mu.shape[0], self.propensity_samples
        L = self._sqrt_psd(C)
        E = self.rng_.standard_normal((L.shape[1], M))
        S = Z @ (L @ E)
        S *= self.v
        S += mu[:, None]
        best = S.max(axis=0)
        wins = best - TIE_RTOL * np.maximum(1.0, np.abs(best)) <= S
        share = (wins / wins.sum(axis=0)).sum(axis=1) / M
        j = int(self.rng_.integers(M))
        tied = np.flatnonzero(wins[:, j])
        index = int(tied[0]) if tied.shape[0] == 1 else int(tied[self.rng_.integers(tied.shape[0])])
        if self.epsilon > 0.0 and self.rng_.random() < self.epsilon:
            index = int(self.rng_.integers(k))
        probs = (1.0 - self.epsilon) * share + self.epsilon / k
        return Choice(index, float(probs[index]), S[:, j].copy(), probs)

    # -- learning and scoring ---------------------------------------------------------------
    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Add ``(x, reward)`` to the arm's regression (disjoint) or ``(phi(x, z), reward)`` to
        the shared one. ``propensity`` is validated but unused (on-policy learning)."""
        if self.mode == "disjoint":
            super().update(x, arm, arm_features, reward, propensity)
            return
        x, z, r = self._check_update(x, arm, arm_features, reward, propensity)
        if not np.all(np.isfinite(z)):
            self._raise_nonfinite(x, z)
        self._shared().update(0, np.multiply.outer(x, z).ravel(), r)
        self.n_updates_ += 1

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Posterior mean rewards for every row of ``X`` and arm: ``(n, k)``."""
        if self.mode == "disjoint":
            return super().score_batch(X, arms, arm_features)
        X, Z = self._check_batch(X, arms, arm_features)
        if not np.all(np.isfinite(Z)):
            self._raise_nonfinite(X[0], Z)
        d, p = X.shape[1], Z.shape[1]
        theta_mat = self._shared().theta[0].reshape(d, p)
        return cast(FloatArray, (X @ theta_mat) @ Z.T)

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        if self.mode == "disjoint":
            super()._set_learned_state(state)
            return
        arms = state.get("arms")
        if not isinstance(arms, list | tuple):
            raise ValidationError.for_field("state.arms", arms, "must be a list of arm ids")
        table = ArmTable()
        table.set_ids(arms)
        ridge = None
        d, p = self.n_features_, self.n_arm_features_
        if d is not None:
            if not p:
                raise ValidationError.for_field(
                    "state.n_arm_features", p, "must be >= 1 in shared mode"
                )
            ridge = RidgeRows(d * p, self.l2, discount=self.discount, window=self.window)
            ridge.set_state(state, 1)
        self.arms_, self.ridge_ = table, ridge
