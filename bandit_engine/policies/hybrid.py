"""Hybrid LinUCB (Li, Chu, Langford & Schapire, WWW 2010, Algorithm 2)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from ..errors import ValidationError
from ..records import Choice
from ._arms import ArmTable
from ._arrays import BoolArray, FloatArray, IntArray, aligned_empty, grow_rows, state_array
from ._checks import SeedLike, check_in_range, check_positive
from ._linalg import axpy, rank1_update
from ._mask import mask_scores
from ._ties import argmax_choice, argmax_distribution
from .base import BasePolicy
from .explain import ArmEstimates

__all__ = ["HybridLinUCB"]


class HybridLinUCB(BasePolicy):
    """LinUCB with a shared part over user x bundle features and a per-bundle part over ``x``.

    The expected reward of bundle ``a`` for context ``x`` is modelled as
    ``z_a' beta + x' theta_a`` with the shared features ``z_a = vec(outer(x, arm_features_a))``
    (dimension ``D = d * p``, row-major: entry ``i * p + j`` is ``x_i * arm_features_a[j]``)
    and a per-bundle coefficient ``theta_a`` on ``x``. The score is the estimate plus
    ``alpha * sqrt(s_a)`` with Li et al.'s variance term ``s_a``.

    Parameters
    ----------
    alpha
        Width of the confidence bonus (``>= 0``).
    l2
        Ridge prior of the shared (``A0 = l2*I``) and per-bundle (``A_a = l2*I``) parts.
    epsilon
        Probability of a uniformly random choice, in ``[0, 1]``.
    seed
        Seed or ``numpy.random.Generator``.

    Notes
    -----
    *Updates without inverses.* Li et al.'s ``A0`` is the Schur complement of the joint
    information matrix of ``(beta, theta_1, theta_2, ...)``, whose inverse's top-left block is
    ``A0^{-1}``. An observation adds a rank-one term ``w w'`` to the joint matrix, so by
    Sherman–Morrison ``A0^{-1}`` changes by the rank-one ``- g g' / (1 + s_a)`` with
    ``g = A0^{-1} (z_a - B_a' A_a^{-1} x)`` and ``s_a`` the very variance term of the score;
    ``A_a^{-1}`` gets an ordinary Sherman–Morrison update. Both are checked against the paper's
    formulas with fresh inverses in the tests.

    *Cost.* The shared part makes this policy much heavier than disjoint LinUCB: per decision
    ``O(k * (d D + D^2))`` (the ``D^2`` term is ``(z_a - B_a' A_a^{-1} x)' A0^{-1} (...)`` for
    each candidate), per update ``O(D^2 + d D)``, and ``O(d D)`` floats of state per bundle for
    ``B_a``. With ``d = 32, p = 16`` (``D = 512``) that is about 13 Mflop per decision over
    50 candidates and 128 KiB per bundle; keep ``p`` (and ``d``) small or reduce them before
    using this policy.

    *Cold start.* A bundle never seen has ``theta_a = 0`` but is still scored by the shared
    part ``z_a' beta``, so a new bundle whose features resemble good bundles ranks high
    immediately.

    *Propensity* is defined exactly as for :class:`~bandit_engine.policies.linucb.LinUCB`
    (argmax with uniform ties within a relative ``1e-12``, epsilon mixing).
    """

    name = "hybrid_linucb"
    _param_names = ("alpha", "l2", "epsilon")

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        l2: float = 1.0,
        epsilon: float = 0.0,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.l2 = check_positive("l2", l2)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.arms_ = ArmTable()
        self.A0_inv_: FloatArray = aligned_empty((0, 0))
        self.b0_: FloatArray = aligned_empty((0,))
        self.beta_: FloatArray = aligned_empty((0,))
        self.A_inv_: FloatArray = aligned_empty((0, 0, 0))
        self.B_: FloatArray = aligned_empty((0, 0, 0))
        self.b_: FloatArray = aligned_empty((0, 0))

    # -- storage ----------------------------------------------------------------------------
    def _init_dims(self, d: int, p: int) -> None:
        if p == 0:
            raise ValidationError.for_field(
                "arm_features", "0 columns", "must have >= 1 column for the shared part"
            )
        D = d * p
        self.A0_inv_ = np.eye(D) / self.l2
        self.b0_ = np.zeros(D)
        self.beta_ = np.zeros(D)
        self.A_inv_ = aligned_empty((0, d, d))
        self.B_ = aligned_empty((0, d, D))
        self.b_ = aligned_empty((0, d))
        self._ensure(0)

    def _ensure(self, n_arms: int) -> None:
        """Rows for ``n_arms`` arms plus one spare prior row (for arms not yet created)."""
        d = self.A_inv_.shape[1]
        self.A_inv_ = grow_rows(self.A_inv_, n_arms + 1, np.eye(d) / self.l2)
        self.B_ = grow_rows(self.B_, n_arms + 1, 0.0)
        self.b_ = grow_rows(self.b_, n_arms + 1, 0.0)

    # -- scoring ----------------------------------------------------------------------------
    def _parts(
        self, x: FloatArray, Z: FloatArray, rows: IntArray, contiguous: bool
    ) -> tuple[FloatArray, FloatArray]:
        """``(mean, s)`` for the candidates: ``mean = w' beta + u' b_a`` and
        ``s = w' A0^{-1} w + x' u`` with ``u = A_a^{-1} x`` and ``w = z_a - B_a' u``."""
        k, d = rows.shape[0], x.shape[0]
        if contiguous:
            A_inv, B, b = self.A_inv_[:k], self.B_[:k], self.b_[:k]
        else:
            A_inv, B, b = self.A_inv_[rows], self.B_[rows], self.b_[rows]
        u = (A_inv.reshape(k * d, d) @ x).reshape(k, d)
        W = (Z[:, None, :] * x[None, :, None]).reshape(k, -1)
        W -= np.matmul(u[:, None, :], B)[:, 0, :]
        s = np.einsum("kD,kD->k", W @ self.A0_inv_, W) + u @ x
        mean = W @ self.beta_ + np.einsum("kd,kd->k", u, b)
        np.maximum(s, 0.0, out=s)  # >= 0 in exact arithmetic
        return mean, s

    def explain_arms(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> ArmEstimates:
        """Each candidate's estimate ``beta . vec(x (x) z_a) + theta_a . x`` with
        ``theta_a = A_a^{-1} (b_a - B_a beta)``, and the bonus ``alpha sqrt(s_a)``; changes
        nothing (unseen arms: the prior row)."""
        x, Z = self._check_inputs(x, arms, arm_features)
        n = len(self.arms_)
        self._ensure(n)
        rows = self.arms_.lookup(arms, missing=n)
        mean, s = self._parts(x, Z, rows, False)
        A_inv, B, b = self.A_inv_[rows], self.B_[rows], self.b_[rows]
        theta = np.einsum("kij,kj->ki", A_inv, b - B @ self.beta_)
        return ArmEstimates(
            mean,
            self.alpha * np.sqrt(s),
            "exploration bonus",
            x_coef=theta,
            xz_coef=self.beta_.copy(),
        )

    def _scores(self, x: FloatArray, Z: FloatArray, rows: IntArray, contiguous: bool) -> FloatArray:
        mean, s = self._parts(x, Z, rows, contiguous)
        np.sqrt(s, out=s)
        s *= self.alpha
        s += mean
        return s

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        x, Z = self._check_inputs(x, arms, arm_features)
        rows, contiguous, n_new = self.arms_.rows(arms)
        if n_new:
            self._ensure(len(self.arms_))
        scores = self._scores(x, Z, rows, contiguous)
        try:
            index, propensity, probs = argmax_choice(scores, self.rng_, self.epsilon, keep)
        except ValidationError:
            self._raise_nonfinite(x, Z)
            raise
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
        """The exact choice distribution; consumes no randomness and creates no arm."""
        keep = self._keep(mask, arms)
        x, Z = self._check_inputs(x, arms, arm_features)
        rows = self.arms_.lookup(arms, missing=len(self.arms_))
        scores = self._scores(x, Z, rows, False)
        try:
            return argmax_distribution(scores, self.epsilon, keep)
        except ValidationError:
            self._raise_nonfinite(x, Z)
            raise

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Estimated mean rewards ``z_a' beta + x' theta_a``: ``(n, k)``."""
        X, Z = self._check_batch(X, arms, arm_features)
        if not np.all(np.isfinite(Z)):
            self._raise_nonfinite(X[0], Z)
        rows = self.arms_.lookup(arms, missing=len(self.arms_))
        d, p = X.shape[1], Z.shape[1]
        # theta_a = A_a^{-1} (b_a - B_a beta), for the k candidates at once.
        rhs = self.b_[rows] - self.B_[rows] @ self.beta_
        theta = np.matmul(self.A_inv_[rows], rhs[:, :, None])[:, :, 0]
        return cast(FloatArray, X @ theta.T + (X @ self.beta_.reshape(d, p)) @ Z.T)

    # -- learning ---------------------------------------------------------------------------
    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Li et al.'s Algorithm 2 update, with rank-one inverse updates (class notes).
        ``propensity`` is validated but unused (on-policy learning)."""
        x, z, r = self._check_update(x, arm, arm_features, reward, propensity)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(z))):
            self._raise_nonfinite(x, z)
        row, created = self.arms_.row(arm)
        if created:
            self._ensure(len(self.arms_))
        Ai, B, b = self.A_inv_[row], self.B_[row], self.b_[row]
        zs = np.multiply.outer(x, z).ravel()
        u = Ai @ x
        w = zs - u @ B
        g = self.A0_inv_ @ w
        s = float(w @ g) + float(x @ u)
        if not math.isfinite(s):  # overflow of finite but huge inputs
            raise ValidationError.for_field("x", "too large", "must have moderate magnitude")
        # b0 += B' A^{-1} b (old arm state) ... b0 += r z - B' A^{-1} b (new arm state)
        self.b0_ += (Ai @ b) @ B
        rank1_update(self.A0_inv_, -1.0 / (1.0 + s), g, g)
        rank1_update(Ai, -1.0 / (1.0 + float(x @ u)), u, u)
        rank1_update(B, 1.0, x, zs)
        axpy(x, b, a=r)
        axpy(zs, self.b0_, a=r)
        self.b0_ -= (Ai @ b) @ B
        np.matmul(self.A0_inv_, self.b0_, out=self.beta_)
        self.n_updates_ += 1

    # -- state ------------------------------------------------------------------------------
    def _learned_state(self) -> dict[str, Any]:
        n = len(self.arms_)
        state: dict[str, Any] = {"arms": list(self.arms_.ids)}
        if self.n_features_ is not None:
            state.update(
                A0_inv=self.A0_inv_.copy(),
                b0=self.b0_.copy(),
                beta=self.beta_.copy(),
                A_inv=self.A_inv_[:n].copy(),
                B=self.B_[:n].copy(),
                b=self.b_[:n].copy(),
            )
        return state

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        table = ArmTable.from_state(state)
        d, p = self.n_features_, self.n_arm_features_
        if d is None:
            if len(table):
                raise ValidationError.for_field(
                    "state.n_features", None, "must be set when arms exist"
                )
            self.arms_ = table
            return
        if not p:
            raise ValidationError.for_field("state.n_arm_features", p, "must be >= 1")
        D, n = d * p, len(table)
        new = {
            "A0_inv_": state_array(state, "A0_inv", (D, D)),
            "b0_": state_array(state, "b0", (D,)),
            "beta_": state_array(state, "beta", (D,)),
            "A_inv_": state_array(state, "A_inv", (n, d, d)),
            "B_": state_array(state, "B", (n, d, D)),
            "b_": state_array(state, "b", (n, d)),
        }
        self.arms_ = table
        for key, value in new.items():
            setattr(self, key, value)
        self._ensure(n)
