"""Exact argmax over a deal x course grid without scoring every pair (branch and bound).

A structured policy knows, for every deal ``d``, an upper bound ``ub[d] >= max_c score(d, c)``
that costs O(1) per deal, and can score all courses of a batch of deals exactly. The search scores
deals in decreasing order of their bound and stops as soon as the next bound falls below the best
exact score found: every pair left unscored is then provably worse than the best. Pairs whose
score is within :data:`~bandit_engine.policies._ties.TIE_RTOL` of the maximum are all returned, so
uniform tie-breaking (and the logged propensity) is the same as a full scan's.

Batches start small (a tight bound usually needs one) and double, so a loose bound (a fresh
model, where every pair ties) costs a few large vectorised batches rather than many small ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import ValidationError
from ._arrays import FloatArray, IntArray
from ._ties import TIE_RTOL

__all__ = ["GridArgmax", "grid_argmax"]

_FIRST_BATCH = 8
_MAX_BATCH = 512
_HEAD = 64


def _tol(best: float) -> float:
    return TIE_RTOL * max(1.0, abs(best))


class GridArgmax:
    """Result of :func:`grid_argmax`: the maximum, every pair tied with it, pairs scored."""

    __slots__ = ("best", "courses", "deals", "scored")

    def __init__(self, best: float, deals: IntArray, courses: IntArray, scored: int) -> None:
        self.best = best
        self.deals = deals
        self.courses = courses
        self.scored = scored


def grid_argmax(ub: FloatArray, evaluate: Callable[[IntArray], FloatArray]) -> GridArgmax:
    """Maximise ``score(d, c)`` over ``len(ub) x n_courses`` pairs.

    Parameters
    ----------
    ub
        ``ub[d] >= score(d, c)`` for every course ``c`` (the caller pads it for rounding).
    evaluate
        ``evaluate(deals)`` returns the exact scores of those deals' pairs, shape
        ``(len(deals), n_courses)``; ``-inf`` marks a pair that is not a candidate (at least one
        pair must be).

    Returns
    -------
    The maximum, the ``(deal, course)`` positions of every pair within the tie tolerance of it (in
    row-major order), and how many pairs were scored.
    """
    n = ub.shape[0]
    # Usually a few dozen deals settle the search: order the best _HEAD bounds first (a partial
    # sort) and sort the rest only if the search gets that far.
    if n > _HEAD:
        head = np.argpartition(-ub, _HEAD - 1)[:_HEAD]
        order = head[np.argsort(-ub[head], kind="stable")]
    else:
        order = np.argsort(-ub, kind="stable")
    best = -math.inf
    hits_d: list[IntArray] = []
    hits_c: list[IntArray] = []
    hits_s: list[FloatArray] = []
    scored = 0
    i = 0
    size = _FIRST_BATCH
    while i < n:
        if i == order.shape[0]:  # past the head: the remaining deals, in bound order
            rest = np.ones(n, dtype=bool)
            rest[order] = False
            tail = np.flatnonzero(rest)
            order = np.concatenate([order, tail[np.argsort(-ub[tail], kind="stable")]])
        if scored and float(ub[order[i]]) < best - _tol(best):
            break
        batch = order[i : min(i + size, order.shape[0])]
        last = False
        if scored:  # bounds are in decreasing order: cut the batch where they fall below the best
            n_keep = int(np.count_nonzero(ub[batch] >= best - _tol(best)))
            last = n_keep < batch.shape[0]  # then every later deal is bounded below the best too
            batch = batch[:n_keep]
        s = evaluate(batch)
        scored += s.size
        top = float(s.max())
        if math.isnan(top) or top == math.inf:
            raise ValidationError.for_field(
                "scores", "non-finite", "must be finite (check the grid's features for NaN or inf)"
            )
        i += batch.shape[0]
        size = min(2 * size, _MAX_BATCH)
        if top == -math.inf:  # no candidate pair among these deals
            continue
        if top >= best - _tol(max(best, top)):
            best = max(best, top)
            r, c = np.nonzero(s >= best - _tol(best))
            hits_d.append(batch[r])
            hits_c.append(c.astype(np.intp))
            hits_s.append(s[r, c])
        if last:
            break
    if not hits_d:
        raise ValidationError.for_field("grid", "no candidate pair", "must hold a candidate")
    d = np.concatenate(hits_d)
    c = np.concatenate(hits_c)
    keep = np.concatenate(hits_s) >= best - _tol(best)
    d, c = d[keep], c[keep]
    # row-major order, whatever order the deals were visited in
    key = np.lexsort((c, d))
    return GridArgmax(best, d[key], c[key], scored)
