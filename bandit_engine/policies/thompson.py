"""Linear Thompson sampling (Agrawal & Goyal, ICML 2013), disjoint or shared.

The posterior of a ridge regression with design ``A`` and estimate ``theta_hat = A^{-1} b`` is
taken as ``N(theta_hat, v^2 A^{-1})``; each decision samples from it and plays the argmax.

Two algorithms share the name ``lin_ts``: :class:`DisjointLinearTS` (one regression per arm,
independent posteriors, exact propensities by quadrature: :mod:`._ts_propensity`) and
:class:`SharedLinearTS` (one regression on ``vec(outer(x, z))`` for all arms, propensities from
posterior samples). ``LinearTS(mode=...)`` builds the one named by ``mode``; ``mode`` is saved
with the other parameters, so a saved model loads as the algorithm it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import numpy as np

from ..errors import ConfigError, ValidationError
from ..records import Choice
from ._arms import ArmTable
from ._arrays import BoolArray, FloatArray
from ._checks import SeedLike, check_choice, check_in_range, check_int, check_positive
from ._kernels import kernels
from ._mask import widen_choice, widen_probabilities
from ._ridge import RidgeRows, check_forgetting
from ._ridge_policy import RidgeArmsPolicy
from ._ties import TIE_RTOL
from ._ts_propensity import prob_max_normal_numpy
from .base import BasePolicy
from .scale import RewardMoments, check_scale

__all__ = [
    "MODES",
    "PROPENSITY_FLOOR",
    "DisjointLinearTS",
    "LinearTS",
    "SharedLinearTS",
    "prob_max_normal",
    "prob_max_normal_numpy",
]

#: Smallest propensity Thompson sampling reports (before epsilon mixing). Quadrature can return
#: 0 (or a rounding-level negative) for an arm that won a draw with tiny probability; IPS needs
#: a positive number, and a weight above 1e12 would dominate any estimate anyway.
PROPENSITY_FLOOR = 1e-12

#: The two algorithms of ``LinearTS(mode=...)``.
MODES = ("disjoint", "shared")


def prob_max_normal(mu: FloatArray, sd: FloatArray, a: int) -> float:
    """``P(S_a > S_b for all b != a)`` for independent ``S_b ~ N(mu_b, sd_b^2)`` (``sd > 0``).

    Two arms: the closed form; more arms: composite Gauss–Legendre quadrature with a documented
    error budget (about ``1e-9`` relative from range and pruning, measured quadrature error;
    the rule, its budget and why plain Gauss–Hermite was rejected: :mod:`._ts_propensity`).

    With ``numba`` installed (extra ``fast``) a compiled kernel applies the same rule, skipping
    per node the competitors whose factor there is ``>= 1 - 4.0e-11`` and taking ``Phi`` from a
    Taylor table (see :mod:`bandit_engine.policies._ts_numba`): about 4x faster, agreeing with
    :func:`prob_max_normal_numpy` to ~1e-9 relative. Set ``BANDIT_ENGINE_NO_NUMBA=1`` to use the
    numpy implementation regardless.
    """
    return kernels.prob_max_normal(mu, sd, a)


class LinearTS(BasePolicy):
    """Linear Thompson sampling with exact propensities.

    ``LinearTS(...)`` builds the algorithm ``mode`` names: :class:`DisjointLinearTS` or
    :class:`SharedLinearTS` (both subclasses, both registered as ``lin_ts``). This class holds
    what they share: the parameters, their validation and the epsilon mixing.

    Parameters
    ----------
    v
        Posterior scale: ``theta ~ N(theta_hat, v^2 A^{-1})`` (``> 0``), or ``"auto"`` (the
        default): ``0.1 x`` the running standard deviation of the learned rewards
        (:mod:`~bandit_engine.policies.scale`; Agrawal & Goyal scale the posterior by the
        reward noise, so a fixed ``v = 1`` suits one reward scale only).
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

    v: float | str
    epsilon: float
    moments_: RewardMoments
    mode: str
    propensity_samples: int
    #: The ``mode`` a concrete subclass implements.
    _mode: ClassVar[str] = ""

    def __new__(
        cls,
        *,
        v: float | str = "auto",
        l2: float = 1.0,
        epsilon: float = 0.0,
        mode: str = "disjoint",
        propensity_samples: int = 1000,
        discount: float | None = None,
        window: int | None = None,
        seed: SeedLike = None,
    ) -> LinearTS:
        # ``LinearTS(...)`` picks the algorithm; the subclasses validate every argument, in
        # the order the single class of earlier versions did.
        if cls is LinearTS:
            cls = SharedLinearTS if mode == "shared" else DisjointLinearTS
        return super().__new__(cls)

    def _set_ts_params(
        self, v: float | str, epsilon: float, mode: str, propensity_samples: int
    ) -> None:
        """Validate and set the sampling hyperparameters; ``mode`` must be this class's."""
        self.v = check_scale("v", v, allow_zero=False)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.mode = check_choice("mode", mode, MODES)
        if self.mode != self._mode:
            raise ConfigError.for_field(
                "mode", mode, f"must be {self._mode!r} for {type(self).__name__}"
            )
        self.propensity_samples = check_int("propensity_samples", propensity_samples, minimum=1)

    def _v(self) -> float:
        """The posterior scale: ``v``, or ``0.1 x`` the running reward sd for ``"auto"``."""
        return self.moments_.scale(self.v)

    def _mix(self, p: float, k: int) -> float:
        """The reported propensity: ``p`` floored at :data:`PROPENSITY_FLOOR`, mixed with
        epsilon."""
        p = min(max(p, PROPENSITY_FLOOR), 1.0)
        return (1.0 - self.epsilon) * p + self.epsilon / k


class DisjointLinearTS(RidgeArmsPolicy, LinearTS):
    """Disjoint linear Thompson sampling: one regression per arm on ``x``, independent
    posteriors, the exact probability of the choice by quadrature (see :class:`LinearTS`,
    *Disjoint mode*). Built by ``LinearTS(mode="disjoint")``, the default."""

    _mode = "disjoint"

    def __init__(
        self,
        *,
        v: float | str = "auto",
        l2: float = 1.0,
        epsilon: float = 0.0,
        mode: str = "disjoint",
        propensity_samples: int = 1000,
        discount: float | None = None,
        window: int | None = None,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(l2=l2, discount=discount, window=window, seed=seed)
        self._set_ts_params(v, epsilon, mode, propensity_samples)

    _spread_kind = "posterior sd"

    def _spread(self, q: FloatArray) -> FloatArray:
        """The sd ``v sqrt(x' A_a^{-1} x)`` of the arm's posterior draw."""
        out: FloatArray = np.sqrt(q) * self._v()
        return out

    def _mean_sd(self, m: FloatArray, q: FloatArray) -> FloatArray:
        sd = np.sqrt(q, out=q)
        sd *= self._v()
        floor = 1e-12 * max(1.0, float(np.abs(m).max()))
        np.maximum(sd, floor, out=sd)
        return sd

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        x, ridge, rows = self._prepare(x, arms, arm_features)
        m, q = ridge.mean_var(x, rows)  # the whole list: its cached block
        if keep is not None:  # then draw for the kept arms only, as on the sub-list
            m, q = m[keep], q[keep]
        choice = self._choose_from(x, m, q)
        return choice if keep is None else widen_choice(choice, keep, len(arms))

    def _choose_from(self, x: FloatArray, m: FloatArray, q: FloatArray) -> Choice:
        """The draw and its propensity from the candidates' means and widths."""
        k = m.shape[0]
        scores = cast(FloatArray, self.rng_.standard_normal(k))
        if self.epsilon == 0.0:
            # The draw and its propensity in one call (compiled: saves ~5 numpy calls).
            index, p = kernels.ts_choose(m, q, scores, self._v())
            if not math.isfinite(float(scores[index])):
                self._raise_nonfinite(x)
                raise ValidationError.for_field("scores", "non-finite", "must be finite")
            return Choice(index, self._mix(p, k), scores, None)
        index = int(kernels.ts_sample(m, q, scores, self._v()))  # q becomes the sds
        if not math.isfinite(float(scores[index])):  # argmax lands on any NaN
            self._raise_nonfinite(x)
            raise ValidationError.for_field("scores", "non-finite", "must be finite")
        if self.rng_.random() < self.epsilon:
            index = int(self.rng_.integers(k))
        propensity = self._mix(prob_max_normal(m, q, index), k)
        return Choice(index, propensity, scores, None)

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray:
        """Every arm's choice probability by quadrature (``k`` of them, so ``O(k^2)`` normal
        CDFs; no randomness)."""
        keep = self._keep(mask, arms)
        x, ridge, rows = self._lookup(x, arms, arm_features)
        m, q = ridge.mean_var(x, rows)
        if not math.isfinite(float(m.sum() + q.sum())):
            self._raise_nonfinite(x)
        if keep is not None:
            m, q = m[keep], q[keep]
        sd = self._mean_sd(m, q)
        k = m.shape[0]
        out = np.array([self._mix(prob_max_normal(m, sd, a), k) for a in range(k)])
        if keep is None:
            return out
        wide = widen_probabilities(out, keep, len(arms))
        assert wide is not None
        return wide


class SharedLinearTS(LinearTS):
    """Shared linear Thompson sampling: one regression for all arms on
    ``phi(x, z) = vec(outer(x, z))``, propensities from ``propensity_samples`` joint posterior
    draws (see :class:`LinearTS`, *Shared mode*). Built by ``LinearTS(mode="shared")``."""

    _mode = "shared"

    def __init__(
        self,
        *,
        v: float | str = "auto",
        l2: float = 1.0,
        epsilon: float = 0.0,
        mode: str = "shared",
        propensity_samples: int = 1000,
        discount: float | None = None,
        window: int | None = None,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.l2 = check_positive("l2", l2)
        self.discount, self.window = check_forgetting(discount, window)
        self._set_ts_params(v, epsilon, mode, propensity_samples)
        # Arm ids are part of the saved state (always empty: the shared model keeps nothing
        # per arm), as in the files written before the two modes were two classes.
        self.arms_ = ArmTable()
        self.ridge_: RidgeRows | None = None
        self.moments_ = RewardMoments()

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
        S *= self._v()
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

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        """(A mask: the sub-list; the shared model keeps no per-list cache.)"""
        keep = self._keep(mask, arms)
        if keep is not None:
            return self._choose_sub_list(keep, x, arms, arm_features)
        return self._choose_shared(x, arms, arm_features)

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray | None:
        """``None``: the scores are correlated, there is no exact marginal (see the notes of
        :class:`LinearTS`). The inputs are still validated."""
        self._keep(mask, arms)
        self._check_inputs(x, arms, arm_features)
        return None

    # -- learning and scoring ---------------------------------------------------------------
    def _init_dims(self, d: int, p: int) -> None:
        if p == 0:
            raise ValidationError.for_field(
                "arm_features", "0 columns", "must have >= 1 column in shared mode"
            )
        self.ridge_ = RidgeRows(d * p, self.l2, discount=self.discount, window=self.window)
        self.ridge_.ensure_rows(1)

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Add ``(phi(x, z), reward)`` to the shared regression. ``propensity`` is validated but
        unused (on-policy learning)."""
        x, z, r = self._check_update(x, arm, arm_features, reward, propensity)
        if not np.all(np.isfinite(z)):
            self._raise_nonfinite(x, z)
        self._shared().update(0, np.multiply.outer(x, z).ravel(), r)
        self.moments_.add(r)
        self.n_updates_ += 1

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Posterior mean rewards for every row of ``X`` and arm: ``(n, k)``."""
        X, Z = self._check_batch(X, arms, arm_features)
        if not np.all(np.isfinite(Z)):
            self._raise_nonfinite(X[0], Z)
        d, p = X.shape[1], Z.shape[1]
        theta_mat = self._shared().theta[0].reshape(d, p)
        return cast(FloatArray, (X @ theta_mat) @ Z.T)

    def _learned_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"arms": list(self.arms_.ids)}
        if self.ridge_ is not None:
            state.update(self.ridge_.get_state())
        state["reward_moments"] = self.moments_.to_list()
        return state

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        self.moments_ = RewardMoments.from_state(state)
        table = ArmTable.from_state(state)
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
