"""Disjoint LinUCB (Li, Chu, Langford & Schapire, WWW 2010, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ValidationError
from ..records import Choice
from ._ridge import RidgeArmsPolicy
from .base import (
    FloatArray,
    SeedLike,
    argmax_choice,
    argmax_distribution,
    check_in_range,
    check_positive,
)

__all__ = ["LinUCB"]


class LinUCB(RidgeArmsPolicy):
    """LinUCB with one ridge regression per arm (bundle) on the user context ``x``.

    Each arm ``a`` keeps ``A_a = l2*I + sum x x'`` and ``b_a = sum r x`` over the rounds it was
    shown; its score is ``theta_a . x + alpha * sqrt(x' A_a^{-1} x)`` with
    ``theta_a = A_a^{-1} b_a``. ``A_a^{-1}`` is maintained by Sherman–Morrison rank-one updates
    (``O(d^2)`` per update, no matrix inversion per step); scoring ``k`` arms costs one
    ``(k*d, d)`` matrix-vector product.

    Parameters
    ----------
    alpha
        Width of the confidence bonus (``>= 0``; 0 is greedy on the ridge estimate).
    l2
        Ridge prior ``A = l2*I`` of every new arm (``> 0``).
    epsilon
        Probability of choosing uniformly at random instead of the UCB argmax, in ``[0, 1]``.
    discount, window
        Optional forgetting for drifting preferences (at most one, see Notes).
    seed
        Seed or ``numpy.random.Generator`` for tie-breaking and epsilon exploration.

    Notes
    -----
    Propensity: the choice follows :func:`~bandit_engine.policies.base.argmax_distribution`:
    ``pi(a) = (1 - epsilon) * [a in T] / |T| + epsilon / k`` where ``T`` holds the arms whose
    score is within a relative ``1e-12`` of the maximum (ties broken uniformly at random, so
    fresh arms with identical state share the choice). With ``epsilon = 0`` the propensity of a
    clear winner is 1 and every other arm has probability 0, so logs of this policy can only
    evaluate target policies that agree with it; use ``epsilon > 0`` when logs are meant for
    off-policy evaluation. :meth:`probabilities` returns ``pi`` without consuming randomness.

    Forgetting counts each arm's own updates, not wall-clock time. ``window=W``: an arm's
    model uses only its last ``W`` updates, exactly: the oldest observation is removed by a
    Sherman–Morrison downdate and, to stop rounding drift, the arm's inverse is recomputed from
    its stored window every ``W`` updates (amortised ``O(d^3 / W)``); the window rows are part
    of the state. ``discount=g``: each update first multiplies the arm's ``A`` and ``b`` by
    ``g``. The prior ``l2*I`` decays with them, so its remaining scale ``s`` is tracked and,
    once ``s < 0.5``, restored exactly (``A += (1 - s)*l2*I``) with one fresh inverse of the
    stored ``A``, about every ``log(2)/(1-g)`` updates of that arm; between restores the prior
    is weaker than ``l2`` by up to a factor 2.

    ``arm_features`` are only checked for shape: disjoint LinUCB learns each bundle separately
    from ``x``. A bundle never seen before starts from the prior (score
    ``alpha * |x| / sqrt(l2)``), which makes new bundles attractive until tried.
    """

    name = "linucb"
    _param_names = ("alpha", "l2", "epsilon", "discount", "window")

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        l2: float = 1.0,
        epsilon: float = 0.0,
        discount: float | None = None,
        window: int | None = None,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(l2=l2, discount=discount, window=window, seed=seed)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)

    def _ucb(self, m: FloatArray, q: FloatArray) -> FloatArray:
        np.sqrt(q, out=q)
        q *= self.alpha
        q += m
        return q

    def choose(self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray) -> Choice:
        x, ridge, rows, contiguous = self._prepare(x, arms, arm_features)
        scores = self._ucb(*ridge.mean_var(x, rows, contiguous))
        try:
            index, propensity, probs = argmax_choice(scores, self.rng_, self.epsilon)
        except ValidationError:
            self._raise_nonfinite(x)
            raise
        return Choice(index, propensity, scores, probs)

    def probabilities(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """The exact choice distribution (see the class notes); consumes no randomness."""
        x, ridge, rows, contiguous = self._lookup(x, arms, arm_features)
        scores = self._ucb(*ridge.mean_var(x, rows, contiguous))
        try:
            return argmax_distribution(scores, self.epsilon)
        except ValidationError:
            self._raise_nonfinite(x)
            raise
