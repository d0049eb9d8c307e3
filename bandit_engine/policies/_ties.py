"""Greedy choice with uniform tie-breaking and epsilon mixing, and its exact distribution.

The rule every argmax policy (LinUCB, hybrid LinUCB, the context-free baselines) documents as
its propensity: ``pi(a) = (1 - epsilon) * [a in T] / |T| + epsilon / k`` with ``T`` the scores
tied with the maximum within :data:`TIE_RTOL`.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ValidationError
from ._arrays import FloatArray, IntArray

__all__ = ["TIE_RTOL", "argmax_choice", "argmax_distribution"]

#: Relative tolerance under which two scores count as tied (see :func:`argmax_distribution`).
TIE_RTOL = 1e-12


def _tie_probs(scores: FloatArray, i: int, epsilon: float) -> tuple[FloatArray, IntArray | None]:
    """``(pi, ties)`` for the maximum at ``i``; ``ties`` is ``None`` when ``i`` is alone."""
    best = float(scores[i])
    if not math.isfinite(best):
        raise ValidationError.for_field(
            "scores", "non-finite", "must be finite (check x and arm_features for NaN or inf)"
        )
    k = scores.shape[0]
    is_tie = scores >= best - TIE_RTOL * max(1.0, abs(best))
    n_ties = int(np.count_nonzero(is_tie))
    if n_ties == 1:
        probs = np.full(k, epsilon / k) if epsilon > 0.0 else np.zeros(k)
        probs[i] += 1.0 - epsilon
        return probs, None
    probs = is_tie.astype(np.float64)
    probs *= (1.0 - epsilon) / n_ties
    if epsilon > 0.0:
        probs += epsilon / k
    return probs, np.flatnonzero(is_tie)


def argmax_distribution(
    scores: FloatArray, epsilon: float = 0.0, keep: IntArray | None = None
) -> FloatArray:
    """The distribution of :func:`argmax_choice` over the candidates (no randomness used).

    ``pi(a) = (1 - epsilon) * [a in T] / |T| + epsilon / k`` where ``T`` is the set of scores
    within ``TIE_RTOL * max(1, |max score|)`` of the maximum. The tolerance makes arms in
    identical states tie even when BLAS sums their scores in a different order (which moves the
    last bit); genuinely different scores closer than that are treated as equal.

    ``keep`` (positions, from :func:`~bandit_engine.policies._mask.check_mask`): the
    distribution over ``scores[keep]`` (``k = len(keep)``), zero elsewhere.
    """
    if keep is not None:
        sub = argmax_distribution(scores[keep], epsilon)
        out = np.zeros(scores.shape[0])
        out[keep] = sub
        return out
    return _tie_probs(scores, int(scores.argmax()), epsilon)[0]


def argmax_choice(
    scores: FloatArray,
    rng: np.random.Generator,
    epsilon: float = 0.0,
    keep: IntArray | None = None,
) -> tuple[int, float, FloatArray]:
    """Greedy choice with uniform random tie-breaking and optional epsilon mixing.

    With probability ``epsilon`` a uniformly random candidate is taken, otherwise a uniformly
    random member of the tie set ``T`` (see :func:`argmax_distribution`), so the propensity of
    the chosen arm is exactly ``pi(index)``. Randomness: one ``rng.random()`` when
    ``epsilon > 0``, one ``rng.integers`` when exploring or when ``|T| > 1``.
    Returns ``(index, pi(index), pi)``; raises :class:`ValidationError` on non-finite scores.
    ``keep``: choose among ``scores[keep]`` only, exactly as if only those were passed (same
    draws); ``index`` and ``pi`` are still positions in ``scores`` (``pi`` zero off ``keep``).
    """
    if keep is not None:
        j, p, sub = argmax_choice(scores[keep], rng, epsilon)
        probs = np.zeros(scores.shape[0])
        probs[keep] = sub
        return int(keep[j]), p, probs
    i = int(scores.argmax())
    probs, ties = _tie_probs(scores, i, epsilon)
    if epsilon > 0.0 and rng.random() < epsilon:
        i = int(rng.integers(scores.shape[0]))
    elif ties is not None:
        i = int(ties[rng.integers(ties.shape[0])])
    return i, float(probs[i]), probs
