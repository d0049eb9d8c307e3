"""Disjoint LinUCB (Li, Chu, Langford & Schapire, WWW 2010, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..records import Choice
from ._arrays import BoolArray, FloatArray, IntArray
from ._checks import SeedLike, check_in_range
from ._kernels import kernels
from ._mask import mask_scores
from ._packed import PackedRows
from ._ridge_policy import RidgeArmsPolicy
from ._ties import TIE_RTOL, argmax_choice, argmax_distribution
from .scale import check_scale

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
        Width of the confidence bonus (``>= 0``; 0 is greedy on the ridge estimate), or
        ``"auto"`` (the default): ``0.1 x`` the running standard deviation of the learned
        rewards, so the width follows the reward scale (:mod:`~bandit_engine.policies.scale`).
    l2
        Ridge prior ``A = l2*I`` of every new arm (``> 0``).
    epsilon
        Probability of choosing uniformly at random instead of the UCB argmax, in ``[0, 1]``.
    discount, window
        Optional forgetting for drifting preferences (at most one, see Notes).
    precision
        ``"float64"`` (default) or ``"float32"``: the precision in which the confidence
        widths ``x' A_a^{-1} x`` are first computed (see Notes). The learned state is float64
        either way, and the choice is the same.
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

    Scoring reads only the upper triangles of the ``A_a^{-1}`` (they are symmetric), packed
    per candidate list (:meth:`PackedRows.mean_var
    <bandit_engine.policies._packed.PackedRows.mean_var>`). ``precision="float32"`` scores from
    float32 copies of those triangles, which halves the memory read per decision again (with
    100 arms of 64 features: 0.8 instead of 1.7 MB, 3.3 MB unpacked). Each float32 width comes
    with a rigorous bound on its rounding error; every arm whose score could, within that
    bound, reach the tie set of the best arm (usually one or two) is rescored in float64 from
    the full matrices. So the chosen arm, the tie set and the propensities are those of the
    float64 scores (to float64 rounding); only the reported scores of arms that cannot win
    carry float32 rounding (measured up to ~3e-7 of the bonus ``alpha sqrt(x' A^{-1} x)``).
    The float32 copies are derived data, rebuilt after loading, never saved. Where a float64
    score is needed exactly for every arm (logging all scores for analysis), keep the default.
    The rescoring relies on the rounding bound of :meth:`PackedRows.mean_var_bounded
    <bandit_engine.policies._packed.PackedRows.mean_var_bounded>` (a worst-case bound for any
    summation order, with a factor 2 of margin), not on measurements; the rule is
    :func:`~bandit_engine.policies._linucb_float32.ucb_float32_numpy` (:func:`_ucb_float32`).

    ``arm_features`` are only checked for shape: disjoint LinUCB learns each bundle separately
    from ``x``. A bundle never seen before starts from the prior (score
    ``alpha * |x| / sqrt(l2)``), which makes new bundles attractive until tried.
    """

    name = "linucb"
    _param_names = ("alpha", "l2", "epsilon", "discount", "window", "precision")

    def __init__(
        self,
        *,
        alpha: float | str = "auto",
        l2: float = 1.0,
        epsilon: float = 0.0,
        discount: float | None = None,
        window: int | None = None,
        precision: str = "float64",
        seed: SeedLike = None,
    ) -> None:
        super().__init__(l2=l2, discount=discount, window=window, seed=seed, precision=precision)
        self.alpha = check_scale("alpha", alpha)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments; ``precision`` only when it is not the default, so that saved
        models and descriptions of default LinUCB are what they were before it existed."""
        params = super().get_params()
        if params.get("precision") == "float64":
            del params["precision"]
        return params

    def _spread(self, q: FloatArray) -> FloatArray:
        """The bonus ``alpha sqrt(x' A_a^{-1} x)`` that the score adds to the estimate."""
        out: FloatArray = np.sqrt(q) * self.moments_.scale(self.alpha)
        return out

    def _ucb(self, m: FloatArray, q: FloatArray) -> FloatArray:
        np.sqrt(q, out=q)
        q *= self.moments_.scale(self.alpha)
        q += m
        return q

    def _scores(self, x: FloatArray, ridge: PackedRows, rows: IntArray) -> FloatArray:
        """UCB scores (float32 mode: see :func:`_ucb_float32`)."""
        if ridge.precision == "float32":
            return _ucb_float32(ridge, x, rows, self.moments_.scale(self.alpha))
        return self._ucb(*ridge.mean_var(x, rows))

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        x, ridge, rows = self._prepare(x, arms, arm_features)
        scores = self._masked_scores(x, ridge, rows, keep)
        try:
            index, propensity, probs = argmax_choice(scores, self.rng_, self.epsilon, keep)
        except ValidationError:
            self._raise_nonfinite(x)
            raise
        return Choice(
            index, propensity, scores if keep is None else mask_scores(scores, keep), probs
        )

    def _masked_scores(
        self, x: FloatArray, ridge: PackedRows, rows: IntArray, keep: IntArray | None
    ) -> FloatArray:
        """Scores of every row (the list's cached block), or in float32 mode with a mask, of the
        kept rows only, spread back: the float32 rule rescores the arms near the best *kept*
        arm, which a block scored with the masked-out arms present would not."""
        if keep is None or ridge.precision != "float32":
            return self._scores(x, ridge, rows)
        out = np.full(rows.shape[0], -np.inf)
        out[keep] = self._scores(x, ridge, rows[keep])
        return out

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray:
        """The exact choice distribution (see the class notes); consumes no randomness."""
        keep = self._keep(mask, arms)
        x, ridge, rows = self._lookup(x, arms, arm_features)
        scores = self._masked_scores(x, ridge, rows, keep)
        try:
            return argmax_distribution(scores, self.epsilon, keep)
        except ValidationError:
            self._raise_nonfinite(x)
            raise


def _ucb_float32(ridge: PackedRows, x: FloatArray, rows: IntArray, alpha: float) -> FloatArray:
    """LinUCB scores ``theta . x + alpha sqrt(x' A^{-1} x)`` in float32 mode: the widths from
    the float32 block, then every arm whose exact score could reach the tie set of the best one
    (:data:`~bandit_engine.policies._ties.TIE_RTOL`) rescored in float64 from the full
    matrices. The argmax and its ties are therefore those of the float64 scores (the rule and
    its bound: :func:`~bandit_engine.policies._linucb_float32.ucb_float32_numpy`)."""
    blk = ridge.block(rows)
    sdiag = blk.sdiag
    assert sdiag is not None
    k = rows.shape[0]
    pk = ridge.packing()
    w32 = pk.w32
    kernels.tri_products(x, w32)
    l2_inv = 1.0 / ridge.l2  # also the prior's A^{-1} diagonal
    scores = np.empty(k)
    # False means a non-finite score, left in ``scores``: the caller's argmax reports it.
    kernels.ucb_float32(
        blk.theta[:k],
        blk.tri[:k] @ w32,
        sdiag[:k],
        x,
        alpha,
        pk.err_rel,
        pk.err_abs,
        l2_inv,
        TIE_RTOL,
        ridge.A_inv,
        rows,
        ridge.n_obs,
        l2_inv,
        scores,
    )
    return scores
