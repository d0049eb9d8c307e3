"""Linear Thompson sampling with one regression shared by all arms (Agrawal & Goyal, ICML 2013,
on the features ``phi(x, z) = vec(outer(x, z))``).

Bundles share what they teach through their features and a new bundle is scored from its features
alone. Its propensity is the share of posterior draws the chosen arm won (see the class notes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from ..errors import ValidationError
from ..records import Choice
from ._ridge import RidgeRows
from .base import TIE_RTOL, ArmTable, FloatArray, SeedLike
from .thompson import LinearTS

__all__ = ["SharedLinearTS"]


class SharedLinearTS(LinearTS, mode="shared"):
    """Linear Thompson sampling over ``phi(x, z) = vec(outer(x, z))``, one regression for all arms.

    Parameters are :class:`~bandit_engine.policies.thompson.LinearTS`'s; ``mode`` is always
    ``"shared"`` (``make_policy("lin_ts", mode="shared")`` and ``LinearTS(mode="shared")`` build
    this class). The regression has dimension ``d * p`` (``A^{-1}`` is ``(d p)^2`` floats, an
    update costs ``O((d p)^2)``). There is no per-bundle term: when the linear model in ``phi``
    is misspecified, a bundle it under-rates is corrected only slowly by its own rewards
    (``HybridLinUCB`` has a per-bundle part). ``propensity_samples`` is the number ``M`` of
    posterior draws per decision; forgetting applies to the single shared regression.

    Notes
    -----
    Scores are correlated (``Cov = v^2 Phi A^{-1} Phi'``), so the winning
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

    def __init__(
        self,
        *,
        v: float = 1.0,
        l2: float = 1.0,
        epsilon: float = 0.0,
        mode: str = "shared",
        propensity_samples: int = 1000,
        discount: float | None = None,
        window: int | None = None,
        seed: SeedLike = None,
    ) -> None:
        if mode != "shared":
            raise ValidationError.for_field("mode", mode, "must be 'shared' for SharedLinearTS")
        super().__init__(
            v=v,
            l2=l2,
            epsilon=epsilon,
            mode=mode,
            propensity_samples=propensity_samples,
            discount=discount,
            window=window,
            seed=seed,
        )

    def probabilities(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray | None:
        """``None``: correlated scores have no exact marginal (see the class notes)."""
        self._check_inputs(x, arms, arm_features)
        return None

    # -- the algorithm ----------------------------------------------------------------------
    def _init_dims(self, d: int, p: int) -> None:
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

    def choose(self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray) -> Choice:
        Z = arm_features
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
        """Add ``(phi(x, z), reward)`` to the shared regression. ``propensity`` is validated but
        unused (on-policy learning)."""
        x, z, r = self._check_update(x, arm, arm_features, reward, propensity)
        if not np.all(np.isfinite(z)):
            self._raise_nonfinite(x, z)
        self._shared().update(0, np.multiply.outer(x, z).ravel(), r)
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

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
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
