"""The ``mask`` argument of ``choose`` / ``probabilities``: which candidates may be chosen.

An engine with business rules (bandit_engine/rules) offers the same per-city candidate list to
every user of a city and rules some of it out per user. Passing the whole list with a mask, rather
than the shrunk list, lets a policy keep its per-list caches (the ridge policies' packed scoring
blocks, :mod:`._packed`, and the arm-row tuples, :mod:`._arms`) and apply the mask only where the
choice is made. The contract every policy honours: ``choose(x, arms, Z, mask=m)`` has the
distribution of ``choose(x, arms[m], Z[m])`` mapped back to positions in ``arms`` (the built-in
policies even consume the same random numbers), so the propensity is the probability over the
set that was actually eligible. A masked-out candidate has score ``-inf`` and probability 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError
from ..records import Choice
from ._arrays import FloatArray, IntArray

__all__ = ["check_mask", "mask_scores", "widen_choice", "widen_probabilities"]

_BOOL = np.dtype(np.bool_)


def check_mask(mask: Any, k: int) -> IntArray | None:
    """The positions ``mask`` keeps, or ``None`` when it keeps all ``k`` (or is ``None``).

    ``mask`` must be a boolean array of shape ``(k,)`` with at least one ``True``.
    """
    if mask is None:
        return None
    m = mask if type(mask) is np.ndarray else np.asarray(mask)
    if m.dtype != _BOOL or m.shape != (k,):
        raise ValidationError.for_field(
            "mask",
            f"{m.dtype} array of shape {m.shape}",
            f"must be a boolean array with one entry per arm (shape ({k},))",
        )
    keep = m.nonzero()[0]  # np.flatnonzero for a 1-d array, without its Python wrapper
    if keep.shape[0] == k:
        return None
    if keep.shape[0] == 0:
        raise ValidationError.for_field("mask", "no arm", "must allow at least one arm")
    return keep


def mask_scores(scores: FloatArray, keep: IntArray) -> FloatArray:
    """``scores`` with every masked-out position set to ``-inf`` (a new array)."""
    out = np.full(scores.shape[0], -np.inf)
    out[keep] = scores[keep]
    return out


def widen_probabilities(sub: FloatArray | None, keep: IntArray, k: int) -> FloatArray | None:
    """A distribution over the kept positions spread back over all ``k`` (zeros elsewhere)."""
    if sub is None:
        return None
    out = np.zeros(k)
    out[keep] = sub
    return out


def widen_choice(choice: Choice, keep: IntArray, k: int) -> Choice:
    """A :class:`Choice` made on the sub-list ``arms[keep]`` as positions in the whole list."""
    scores = np.full(k, -np.inf)
    scores[keep] = choice.scores
    return Choice(
        int(keep[choice.index]),
        choice.propensity,
        scores,
        widen_probabilities(choice.probabilities, keep, k),
    )
