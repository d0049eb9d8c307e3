"""Hybrid pair-feature bandits: one shared linear model over (user, bundle) pair rows plus a
per-bundle bias, with UCB (:class:`PairUCB`, ``pair_ucb``) or Thompson sampling
(:class:`PairTS`, ``pair_ts``) exploration.

Model
-----
The candidate row ``s_a`` the engine passes (``arm_features``) already describes the *pair*: bundle
features, profile-match flags and profile x bundle crosses (:mod:`bandit_engine.features.pairs`)
and the user's live behaviour on this candidate (:mod:`bandit_engine.features.behaviour`). The
expected reward is ``s_a . beta + theta_a``: ``beta`` is shared by every bundle (what a bundle's
features predict, learned from all bundles' feedback), ``theta_a`` is the bundle's own quality
beyond its features. This is Li et al.'s hybrid LinUCB (WWW 2010, Algorithm 2) with the per-arm
feature reduced to a constant 1 and the shared feature ``z_{t,a}`` being the low-dimensional pair
row instead of ``x (x) z``: a shared ``p x p`` system (p ~ 60 on the demo world) and three numbers per
bundle. Priors: ``beta ~ N(0, v^2 / l2 I)``, ``theta_a ~ N(0, v^2 / l2_arm)``; a bundle never seen
starts at ``theta = 0``, i.e. at what its features predict (cold start for new bundles), and the
context's own columns ``x`` enter only through the pair row (they are constant across candidates).

The posterior is kept as in Algorithm 2: ``A0`` (and its inverse, by Sherman-Morrison, re-inverted
exactly every ``refresh`` updates), ``b0``; per bundle ``A_a`` (scalar), ``B_a`` (``p``) and
``b_a``. Then ``beta = A0^-1 b0``, ``theta_a = (b_a - B_a . beta) / A_a`` and the variance of
``s_a . beta + theta_a`` is ``s' A0^-1 s - 2 s' A0^-1 B_a / A_a + 1 / A_a + B_a' A0^-1 B_a / A_a^2``.

Exploration scale from the reward scale
---------------------------------------
``alpha="auto"`` (the default) sets the UCB width, or the TS posterior scale, to
``kappa * sigma_hat`` where ``sigma_hat`` is a running standard deviation of the rewards this
policy has learned from (Welford), shrunk towards ``sigma0`` with ``n0`` pseudo-observations before
data arrive. Confidence widths of linear bandits are proportional to the reward noise (Abbasi-Yadkori,
Pal, Szepesvari, NeurIPS 2011, Thm 2: ``R sqrt(d log(...)) + sqrt(lambda) S`` with ``R`` the
sub-Gaussian scale of the noise), so rescaling rewards rescales ``alpha``; ``kappa`` replaces the
theoretical ``sqrt(d log ...)`` factor, which is known to over-explore badly in practice (Li et al.
2010 use 0.1-1 on 0/1 rewards). ``kappa = 0.25`` was chosen on the simulator
(benchmarks/README.md, issue 8 section).

Propensities
------------
Empirical-Bayes priors for one-hot groups
----------------------------------------
A fixed prior ``beta_j ~ N(0, sigma^2 / l2)`` says a never-seen deal's own effect could be as
large as the whole reward scale, so UCB and TS spend most decisions on a new deal or course until
its column has seen hundreds of observations (86% of decisions for a fair share of 35% in
``simulations/new_bundles.toml``). The engine tells the policy which columns form one-hot groups
(``prior_groups``: deal ids, course ids, topic x cuisine cells), and with ``hierarchical=True``
(the default) each group ``G`` gets its own prior variance ``tau_G^2``, estimated from the data by
the EM update for a Gaussian hierarchical model (Dempster, Laird & Rubin 1977; the type-II
maximum-likelihood "empirical Bayes" of Morris 1983)::

    tau_G^2 <- mean_{j in G, seen} ( beta_j^2 + sigma^2 (A0^-1)_jj ),   lambda_G = sigma^2 / tau_G^2

over the group's columns that have data, iterated to a fixed point at every exact refresh, with
``lambda_G`` kept in ``[l2, l2 * 1e3]`` (never looser than the configured prior; never so tight
that a new part cannot be learned). A new deal then starts with the spread that existing deals'
effects actually show. Limits: it needs at least two seen columns in a group (otherwise ``l2``),
and ``sigma^2`` is the running variance of the rewards, an upper bound on the noise variance,
which errs towards a looser prior.

Propensities
------------
``pair_ucb``: greedy on the UCB scores with uniform tie-breaking, mixed with ``epsilon``: exact,
``(1-eps) [a in ties] / |ties| + eps / k``. ``pair_ts``: ``M + 1`` joint posterior samples are
drawn (``M = propensity_samples``) and the argmax of one of them, picked uniformly, is played, so
given the samples an arm is chosen with probability exactly its share of the samples' wins: the
logged propensity is the true probability of the choice (mixed with ``epsilon``), at least
``1 / (M + 1)`` for the arm played. As ``M`` grows this tends to Thompson sampling's own
(intractable) probability of choosing the arm; with ``M = 0`` it is plain Thompson sampling with
propensity 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..records import Choice
from ._arms import ArmTable
from ._arrays import BoolArray, FloatArray, state_array
from ._checks import SeedLike, check_in_range, check_int, check_positive
from ._linalg import rank1_update
from ._mask import mask_scores
from ._pair_cache import StaticWidthCache
from ._ties import argmax_choice, argmax_distribution
from .base import BasePolicy
from .explain import ArmEstimates
from .scale import RewardMoments

__all__ = ["PairTS", "PairUCB"]


def _check_alpha(alpha: Any) -> float | str:
    if alpha == "auto":
        return "auto"
    if isinstance(alpha, str):
        raise ConfigError.for_field("alpha", alpha, "must be 'auto' or a number >= 0")
    return check_positive("alpha", alpha, allow_zero=True)


class _PairHybrid(BasePolicy):
    """Shared state and scoring of :class:`PairUCB` and :class:`PairTS`."""

    #: An engine with a behaviour block passes this policy the extended candidate rows
    #: (bundle, pair and behaviour features; :class:`~bandit_engine.Engine`).
    pair_features: ClassVar[bool] = True

    _param_names: ClassVar[tuple[str, ...]] = (
        "alpha",
        "kappa",
        "sigma0",
        "n0",
        "l2",
        "l2_arm",
        "epsilon",
        "refresh",
        "hierarchical",
    )

    #: Most EM iterations per refresh (each one is a ``p x p`` inversion).
    EM_ITERATIONS: ClassVar[int] = 20
    #: The tightest empirical prior, as a multiple of ``l2``.
    MAX_PRIOR_RATIO: ClassVar[float] = 1e3

    def __init__(
        self,
        *,
        alpha: float | str = "auto",
        kappa: float = 0.25,
        sigma0: float = 1.0,
        n0: float = 20.0,
        l2: float = 1.0,
        l2_arm: float = 4.0,
        epsilon: float = 0.0,
        refresh: int = 500,
        hierarchical: bool = True,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = _check_alpha(alpha)
        self.kappa = check_positive("kappa", kappa, allow_zero=True)
        self.sigma0 = check_positive("sigma0", sigma0)
        self.n0 = check_positive("n0", n0)
        self.l2 = check_positive("l2", l2)
        self.l2_arm = check_positive("l2_arm", l2_arm)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.refresh = check_int("refresh", refresh, minimum=1)
        if not isinstance(hierarchical, bool):
            raise ConfigError.for_field("hierarchical", hierarchical, "must be True or False")
        self.hierarchical = hierarchical
        #: Column indices of the candidate rows' one-hot groups (set by the engine from its row
        #: layout, like ``static_columns``); each gets an empirical prior when ``hierarchical``.
        self.prior_groups: tuple[np.ndarray, ...] = ()
        self.arms_ = ArmTable()
        self._alloc(0)
        # running reward moments (Welford)
        self.moments_ = RewardMoments()
        self._since_refresh = 0
        #: How many leading columns of every candidate row depend on the bundle alone (the
        #: engine sets it from its row layout; 0: none). Only speed depends on it: the widths'
        #: static part is cached per arm and checked against the row (``_pair_cache``).
        self.static_columns = 0
        self._wcache: StaticWidthCache | None = None

    # -- state -----------------------------------------------------------------------------
    def _alloc(self, p: int) -> None:
        #: prior precision of each shared coefficient (``l2``, or its group's empirical value)
        self.prior_ = np.full(p, self.l2)
        #: prior precision of every bundle's own effect (``l2_arm``, or its empirical value)
        self.arm_prior_ = self.l2_arm
        self.A0_ = self.l2 * np.eye(p)
        self.A0inv_ = np.eye(p) / self.l2
        self.b0_ = np.zeros(p)
        self.Aa_ = np.zeros(0)
        self.Ba_ = np.zeros((0, p))
        self.ba_ = np.zeros(0)
        self._beta: FloatArray | None = None
        self._wcache = None

    def _init_dims(self, d: int, p: int) -> None:
        self._alloc(p)

    def _grow(self, n: int) -> None:
        m = self.Aa_.shape[0]
        if n <= m:
            return
        cap = max(n, 2 * m, 16)
        p = self.b0_.shape[0]
        Aa = np.full(cap, self.arm_prior_)
        Aa[:m] = self.Aa_
        Ba = np.zeros((cap, p))
        Ba[:m] = self.Ba_
        ba = np.zeros(cap)
        ba[:m] = self.ba_
        self.Aa_, self.Ba_, self.ba_ = Aa, Ba, ba

    @property
    def scale(self) -> float:
        """The exploration scale in use: ``alpha``, or ``kappa * sigma_hat`` when ``"auto"``."""
        if self.alpha != "auto":
            return float(self.alpha)
        return self.kappa * self.moments_.sigma(self.sigma0, self.n0)

    def _width_cache(self) -> StaticWidthCache | None:
        """The per-arm cache of the static columns' part of the widths (``_pair_cache``), when
        ``static_columns`` says the rows have such a prefix."""
        p = self.b0_.shape[0]
        ps = self.static_columns
        if ps <= 0 or ps >= p:
            self._wcache = None
            return None
        cache = self._wcache
        if cache is None or cache.ps != ps or cache.p != p:
            cache = self._wcache = StaticWidthCache(ps, p)
        return cache

    def _clear_cache(self) -> None:
        if self._wcache is not None:
            self._wcache.clear()

    def _beta_hat(self) -> FloatArray:
        if self._beta is None:
            self._beta = self.A0inv_ @ self.b0_
        return self._beta

    def _posterior(
        self, s: FloatArray, rows: np.ndarray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``(mean, var, Aa, Ba)`` of ``s_a . beta + theta_a`` for candidate rows ``s``."""
        beta = self._beta_hat()
        Aa = self.Aa_[rows]
        Ba = self.Ba_[rows]
        # s.beta + (b_a - B_a.beta)/A_a = w.beta + b_a/A_a and the four variance terms are
        # w' A0^-1 w + 1/A_a, with w = s - B_a / A_a (one product instead of two)
        inv_a = 1.0 / Aa
        w = s - Ba * inv_a[:, None]
        mean = w @ beta + self.ba_[rows] * inv_a
        cache = self._width_cache()
        if cache is not None:
            var = cache.widths(self.A0inv_, s, w, rows)
        else:
            var = np.einsum("ij,ij->i", w @ self.A0inv_, w)
        var += inv_a
        np.maximum(var, 0.0, out=var)
        return mean, var, Aa, Ba

    #: What :meth:`explain_arms` reports as the exploration term.
    _spread_kind: ClassVar[str] = "exploration bonus"

    def explain_arms(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> ArmEstimates:
        """Each candidate's estimate ``beta . s_a + theta_a`` with the bundle's own effect
        ``theta_a = (b_a - B_a . beta) / A_a``, and ``scale sqrt(var_a)`` (the UCB bonus, or the
        sd of the Thompson draw); changes nothing (unseen arms: the prior row)."""
        _, S = self._check_inputs(x, arms, arm_features)
        rows = self._rows(arms, create=False)
        mean, var, Aa, Ba = self._posterior(S, rows)
        beta = self._beta_hat()
        own = (self.ba_[rows] - Ba @ beta) / Aa
        return ArmEstimates(
            mean, self.scale * np.sqrt(var), self._spread_kind, z_coef=beta.copy(), offset=own
        )

    def _rows(self, arms: Sequence[str], create: bool) -> np.ndarray:
        if create:
            rows, _, _ = self.arms_.rows(arms)
            self._grow(len(self.arms_))
            return rows
        # unknown arms -> a prior row (index == current size, allocated on demand)
        self._grow(len(self.arms_) + 1)
        return self.arms_.lookup(arms, len(self.arms_))

    # -- learning --------------------------------------------------------------------------
    def _rank1(self, v: FloatArray, c: float) -> None:
        """``A0 += c v v'`` and its inverse by Sherman-Morrison."""
        rank1_update(self.A0_, c, v, v)
        Mv = self.A0inv_ @ v
        denom = 1.0 + c * float(v @ Mv)
        if not denom > 0.0 or not math.isfinite(denom):  # numerically lost: rebuild from A0
            self._since_refresh = self.refresh
            return
        g = c / denom
        rank1_update(self.A0inv_, -g, Mv, Mv)
        if self._wcache is not None:
            self._wcache.woodbury(Mv[:, None], np.array([[g]]))

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        x, s, r = self._check_update(x, arm, arm_features, reward, propensity)
        if not np.all(np.isfinite(s)):
            self._raise_nonfinite(x, s)
        row, _ = self.arms_.row(arm)
        self._grow(len(self.arms_))
        a_old, B_old, b_old = self.Aa_[row], self.Ba_[row].copy(), self.ba_[row]
        # Algorithm 2 of Li et al. (2010), per-arm feature = 1
        a_new = a_old + 1.0
        B_new = B_old + s
        b_new = b_old + r
        self.Aa_[row], self.Ba_[row], self.ba_[row] = a_new, B_new, b_new
        # Algorithm 2 adds B_old B_old'/a_old + s s' - B_new B_new'/a_new to A0 (and the matching
        # terms to b0). With u = B_old / a_old and m = b_old / a_old that sum is the rank-one
        # c (s - u)(s - u)' with c = a_old / (a_old + 1), and b0 gains c (r - m)(s - u): the
        # observation's deviation from the bundle's own mean, weighted by how much the bundle
        # term has already absorbed (one Sherman-Morrison step instead of a rank-3 Woodbury one)
        c = a_old / a_new
        v = s - B_old / a_old
        self._rank1(v, c)
        if self._wcache is not None:
            self._wcache.drop(row)  # this arm's B_a changed
        self.b0_ += (c * (r - b_old / a_old)) * v
        self._since_refresh += 1
        if self._since_refresh >= self.refresh:
            if self.hierarchical:
                self._empirical_prior()
            self.A0inv_ = np.asarray(np.linalg.inv(self.A0_), dtype=np.float64)
            self._since_refresh = 0
            self._clear_cache()
        self._beta = None
        # reward moments
        self.moments_.add(r)
        self.n_updates_ += 1

    def _empirical_prior(self) -> None:
        """Empirical-Bayes step for the priors (module docstring), run before an exact refresh.

        One EM step for the bundles' own effects: ``tau_a^2 = mean_a(theta_a^2 + sigma^2 / A_a)``
        over the bundles with data, and the new prior precision ``l2_arm' = sigma^2 / tau_a^2``
        (in ``[l2_arm, l2_arm * 1e3]``) replaces the old one in every ``A_a``, with ``A0`` and
        ``b0`` rebuilt from their raw sums (``A0 = prior + sum s s' - sum_a B_a B_a' / A_a``,
        ``b0 = sum r s - sum_a B_a b_a / A_a``). Then EM to a fixed point for each one-hot group
        of shared columns: the estimate uses the group's columns that have data and applies to
        all of them (a column not seen yet is a new part's, the case the prior is for)."""
        p = self.b0_.shape[0]
        n = len(self.arms_)
        sigma2 = self.moments_.sigma(self.sigma0, self.n0) ** 2
        if n:
            Aa, Ba, ba = self.Aa_[:n], self.Ba_[:n], self.ba_[:n]
            seen = Aa - self.arm_prior_ > 1e-9
            if int(seen.sum()) >= 2:
                beta = np.linalg.solve(self.A0_, self.b0_)
                theta = (ba - Ba @ beta) / Aa
                tau2 = float(np.mean(theta[seen] ** 2 + sigma2 / Aa[seen]))
                lo, hi = self.l2_arm, self.l2_arm * self.MAX_PRIOR_RATIO
                lam = min(max(sigma2 / tau2, lo), hi) if tau2 > 0.0 else hi
                if abs(lam - self.arm_prior_) > 1e-3 * self.arm_prior_:
                    raw_A = self.A0_ + (Ba / Aa[:, None]).T @ Ba
                    raw_b = self.b0_ + (Ba / Aa[:, None]).T @ ba
                    Aa_new = Aa + (lam - self.arm_prior_)
                    self.A0_ = raw_A - (Ba / Aa_new[:, None]).T @ Ba
                    self.A0_ = 0.5 * (self.A0_ + self.A0_.T)
                    self.b0_ = raw_b - (Ba / Aa_new[:, None]).T @ ba
                    self.Aa_[:n] = Aa_new
                    self.Aa_[n:] = lam
                    self.arm_prior_ = lam
        data = np.diag(self.A0_) - self.prior_  # each column's own share of A0's diagonal
        work = []
        for g in self.prior_groups:
            g = g[(g >= 0) & (g < p)]
            seen_cols = g[data[g] > 1e-9]
            if seen_cols.size >= 2:
                work.append((g, seen_cols))
        lo, hi = self.l2, self.l2 * self.MAX_PRIOR_RATIO
        for _ in range(self.EM_ITERATIONS if work else 0):
            inv = np.linalg.inv(self.A0_)
            beta = inv @ self.b0_
            var = np.diag(inv)
            moved = 0.0
            for g, seen_cols in work:
                tau2 = float(np.mean(beta[seen_cols] ** 2 + sigma2 * var[seen_cols]))
                lam = min(max(sigma2 / tau2, lo), hi) if tau2 > 0.0 else hi
                old = self.prior_[g]
                moved = max(moved, float(np.max(np.abs(lam - old) / old)))
                self.A0_[g, g] += lam - old
                self.prior_[g] = lam
            if moved < 1e-3:
                break
        self._beta = None

    # -- scoring ---------------------------------------------------------------------------
    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        X, S = self._check_batch(X, arms, arm_features)
        rows = self._rows(arms, create=False)
        mean = self._posterior(S, rows)[0]
        return np.tile(mean, (X.shape[0], 1))

    # -- persistence -----------------------------------------------------------------------
    def _learned_state(self) -> dict[str, Any]:
        n = len(self.arms_)
        return {
            "arms": list(self.arms_.ids),
            "A0": self.A0_.copy(),
            "b0": self.b0_.copy(),
            "Aa": self.Aa_[:n].copy(),
            "Ba": self.Ba_[:n].copy(),
            "ba": self.ba_[:n].copy(),
            "reward_moments": self.moments_.to_list(),
            # the inverse as maintained (Woodbury steps since the last exact inversion), so a
            # loaded policy scores exactly as the saved one, not up to rounding
            "A0inv": self.A0inv_.copy(),
            "since_refresh": self._since_refresh,
            "prior": self.prior_.copy(),
            "arm_prior": self.arm_prior_,
        }

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        p = state.get("n_arm_features") or 0
        arms = list(state["arms"])
        A0 = state_array(state, "A0", (p, p))
        b0 = state_array(state, "b0", (p,))
        n = len(arms)
        Aa = state_array(state, "Aa", (n,))
        Ba = state_array(state, "Ba", (n, p))
        ba = state_array(state, "ba", (n,))
        moments = RewardMoments.from_state(state)
        self.arms_.set_ids(arms)
        self.A0_, self.b0_ = np.ascontiguousarray(A0), b0
        if "A0inv" in state:
            self.A0inv_ = np.ascontiguousarray(state_array(state, "A0inv", (p, p)))
            self._since_refresh = check_int(
                "state.since_refresh", state.get("since_refresh", -1), minimum=0
            )
        else:
            self.A0inv_ = np.linalg.inv(A0) if p else np.zeros((0, 0))
            self._since_refresh = 0
        self.Aa_, self.Ba_, self.ba_ = Aa, Ba, ba
        # files written before the empirical prior existed used l2 on every column
        self.prior_ = state_array(state, "prior", (p,)) if "prior" in state else np.full(p, self.l2)
        self.arm_prior_ = float(state.get("arm_prior", self.l2_arm))
        self.moments_ = moments
        self._wcache = None
        self._beta = None

    def _prepare(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, FloatArray, np.ndarray]:
        x, S = self._check_inputs(x, arms, arm_features)
        rows = self._rows(arms, create=True)
        return x, S, rows


class PairUCB(_PairHybrid):
    """Hybrid pair-feature LinUCB (see the module docstring): score ``mean + scale * sd``."""

    name: ClassVar[str] = "pair_ucb"

    def _scores(self, S: FloatArray, rows: np.ndarray) -> FloatArray:
        mean, var, _, _ = self._posterior(S, rows)
        out: FloatArray = mean + self.scale * np.sqrt(var)
        if not np.all(np.isfinite(out)):
            self._raise_nonfinite(np.zeros(1), S)
        return out

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        x, S, rows = self._prepare(x, arms, arm_features)
        scores = self._scores(S, rows)
        index, propensity, probs = argmax_choice(scores, self.rng_, self.epsilon, keep)
        return Choice(
            index, propensity, scores if keep is None else mask_scores(scores, keep), probs
        )

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray:
        keep = self._keep(mask, arms)
        x, S = self._check_inputs(x, arms, arm_features)
        rows = self._rows(arms, create=False)
        return argmax_distribution(self._scores(S, rows), self.epsilon, keep)


class PairTS(_PairHybrid):
    """Hybrid pair-feature linear Thompson sampling (see the module docstring)."""

    _spread_kind: ClassVar[str] = "posterior sd"

    name: ClassVar[str] = "pair_ts"
    _param_names: ClassVar[tuple[str, ...]] = (*_PairHybrid._param_names, "propensity_samples")

    def __init__(
        self,
        *,
        alpha: float | str = "auto",
        kappa: float = 0.25,
        sigma0: float = 1.0,
        n0: float = 20.0,
        l2: float = 1.0,
        l2_arm: float = 4.0,
        epsilon: float = 0.0,
        refresh: int = 500,
        hierarchical: bool = True,
        propensity_samples: int = 31,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(
            alpha=alpha,
            kappa=kappa,
            sigma0=sigma0,
            n0=n0,
            l2=l2,
            l2_arm=l2_arm,
            epsilon=epsilon,
            refresh=refresh,
            hierarchical=hierarchical,
            seed=seed,
        )
        self.propensity_samples = check_int("propensity_samples", propensity_samples, minimum=0)
        self._chol: FloatArray | None = None
        self._chol_at = -1

    #: The Cholesky factor of ``A0^-1`` used for sampling is recomputed every this many updates
    #: (the posterior mean is always exact; the sampling covariance lags by < 32 observations).
    FACTOR_EVERY = 32

    def _factor(self) -> FloatArray:
        if self._chol is None or self.n_updates_ - self._chol_at >= self.FACTOR_EVERY:
            try:
                chol = np.asarray(np.linalg.cholesky(self.A0inv_), dtype=np.float64)
            except np.linalg.LinAlgError:
                self.A0inv_ = np.asarray(np.linalg.inv(self.A0_), dtype=np.float64)
                self._clear_cache()
                chol = np.asarray(np.linalg.cholesky(self.A0inv_), dtype=np.float64)
            self._chol = chol
            self._chol_at = self.n_updates_
            return chol
        return self._chol

    def _sample_scores(self, S: FloatArray, rows: np.ndarray, m: int) -> FloatArray:
        """``(m, k)`` scores of ``m`` joint posterior samples of (beta, theta).

        ``beta~ = beta + v L e`` (``L L' = A0^-1``) and ``theta_a | beta~ ~ N((b_a - B_a . beta~) /
        A_a, v^2 / A_a)``, so a candidate's sampled score is ``w . beta~ + b_a / A_a + v e' /
        sqrt(A_a)`` with ``w = s - B_a / A_a``: one ``(k, p) x (p, p)`` product per decision.
        """
        v = self.scale
        L = self._factor()
        beta = self._beta_hat()
        p = beta.shape[0]
        Aa = self.Aa_[rows]
        inv_a = 1.0 / Aa
        W = S - self.Ba_[rows] * inv_a[:, None]
        mean = W @ beta + self.ba_[rows] * inv_a
        k = Aa.shape[0]
        E = self.rng_.standard_normal((m, p))
        # the same numbers in whichever order is cheaper: (W L) E' costs k p^2 + m p k,
        # W (L E') costs m p^2 + m p k (many candidates: sample beta first)
        noise = E @ (W @ L).T if k <= m else (E @ L.T) @ W.T
        out: FloatArray = mean[None, :] + v * noise
        out += v * self.rng_.standard_normal((m, k)) * np.sqrt(inv_a)[None, :]
        return out

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        if keep is not None:  # the sub-list (its sampling has no per-list cache to keep)
            return self._choose_sub_list(keep, x, arms, arm_features)
        x, S, rows = self._prepare(x, arms, arm_features)
        M = self.propensity_samples
        scores_all = self._sample_scores(S, rows, M + 1)
        if not np.all(np.isfinite(scores_all)):
            self._raise_nonfinite(x, S)
        k = S.shape[0]
        # Play the argmax of one of the M + 1 joint posterior samples, picked uniformly: given
        # the samples, arm a is then chosen with probability exactly share_a (its share of the
        # samples' wins), so the logged propensity is the true one for this decision, not a
        # Monte Carlo estimate (with M + 1 = 1 it is ordinary Thompson sampling, propensity 1).
        share = np.bincount(scores_all.argmax(axis=1), minlength=k) / (M + 1)
        j = int(self.rng_.integers(M + 1))
        scores = scores_all[j]
        i = int(scores.argmax())
        if self.epsilon > 0.0 and self.rng_.random() < self.epsilon:
            i = int(self.rng_.integers(k))
        probs = (1.0 - self.epsilon) * share + self.epsilon / k
        return Choice(i, float(probs[i]), scores.copy(), probs)

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray | None:
        self._keep(mask, arms)
        return None

    # the sampling factor is part of the state, so a loaded policy samples exactly as the original
    def _learned_state(self) -> dict[str, Any]:
        state = super()._learned_state()
        if self._chol is not None:
            state["chol"] = self._chol.copy()
            state["chol_at"] = self._chol_at
        return state

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        super()._set_learned_state(state)
        if "chol" in state:
            p = self.b0_.shape[0]
            self._chol = state_array(state, "chol", (p, p))
            self._chol_at = int(state["chol_at"])
        else:
            self._chol, self._chol_at = None, -1
