"""Linear Thompson sampling (Agrawal & Goyal, ICML 2013), one regression per arm.

The posterior of a ridge regression with design ``A`` and estimate ``theta_hat = A^{-1} b`` is
taken as ``N(theta_hat, v^2 A^{-1})``; each decision samples from it and plays the argmax.
:class:`LinearTS` keeps one regression per arm (its propensity is exact, by the quadrature of
:mod:`bandit_engine.policies._ts_propensity`); :class:`~bandit_engine.policies.thompson_shared.SharedLinearTS`
keeps one for all arms over ``outer(x, z)`` (``LinearTS(mode="shared")`` builds one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import numpy as np

from ..errors import ValidationError
from ..records import Choice
from ._ridge import RidgeArmsPolicy
from ._ts_propensity import prob_max_normal, prob_max_normal_numpy, ts_kernels
from .base import (
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
        ``"disjoint"`` (this class: one regression per arm on ``x``, independent posteriors).
        ``"shared"`` returns a :class:`~bandit_engine.policies.thompson_shared.SharedLinearTS`
        instead (kept so that saved models and ``make_policy("lin_ts", mode=...)`` work).
    propensity_samples
        Used by the shared variant only (``>= 1``).
    discount, window
        Optional forgetting, as in :class:`~bandit_engine.policies.linucb.LinUCB`.
    seed
        Seed or ``numpy.random.Generator``.

    Notes
    -----
    The arms' posteriors are independent, so drawing each arm's scalar score
    ``s_a ~ N(theta_hat_a . x, v^2 x' A_a^{-1} x)`` is exactly Thompson sampling and costs the
    same as LinUCB. The propensity of the chosen arm is ``P(s_a is the largest)``, computed by
    :func:`prob_max_normal` (quadrature; no extra sampling), floored at
    :data:`PROPENSITY_FLOOR` and mixed with epsilon: ``(1 - epsilon) * P + epsilon / k``.
    Standard deviations are floored at ``1e-12 * max(1, max |mean|)`` so that a zero context
    (all variances 0) still gives a proper distribution (uniform by symmetry). ``choose``
    computes only the chosen arm's probability (``Choice.probabilities`` is ``None``);
    :meth:`probabilities` returns all of them (``k`` quadratures).

    """

    name = "lin_ts"
    _param_names = ("v", "l2", "epsilon", "mode", "propensity_samples", "discount", "window")

    #: The class of each other ``mode`` (filled by the subclasses as they are defined).
    variants: ClassVar[dict[str, type[LinearTS]]] = {}

    def __init_subclass__(cls, *, mode: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if mode is not None:
            LinearTS.variants[mode] = cls

    def __new__(cls, *, mode: str = "disjoint", **kwargs: Any) -> LinearTS:
        variant = LinearTS.variants.get(mode) if cls is LinearTS else None
        # Python then runs the variant's __init__ with the same arguments (it is a LinearTS)
        return super().__new__(variant if variant is not None else cls)

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
        x, ridge, rows = self._prepare(x, arms, arm_features)
        m, q = ridge.mean_var(x, rows)
        k = m.shape[0]
        scores = cast(FloatArray, self.rng_.standard_normal(k))
        kernel = ts_kernels()
        if kernel is not None:
            # The same arithmetic in compiled code (saves ~5 numpy calls per decision); without
            # epsilon the propensity comes from the same call.
            if self.epsilon == 0.0:
                index, p = kernel.choose_disjoint(m, q, scores, self.v, *kernel.args)
                if not math.isfinite(float(scores[index])):
                    self._raise_nonfinite(x)
                    raise ValidationError.for_field("scores", "non-finite", "must be finite")
                return Choice(int(index), self._mix(float(p), k), scores, None)
            index = int(kernel.sample_scores(m, q, scores, self.v))
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
        """Every arm's choice probability by quadrature (``k`` of them, so ``O(k^2)`` normal
        CDFs; no randomness)."""
        x, ridge, rows = self._lookup(x, arms, arm_features)
        m, q = ridge.mean_var(x, rows)
        if not math.isfinite(float(m.sum() + q.sum())):
            self._raise_nonfinite(x)
        sd = self._mean_sd(m, q)
        k = m.shape[0]
        return np.array([self._mix(prob_max_normal(m, sd, a), k) for a in range(k)])
