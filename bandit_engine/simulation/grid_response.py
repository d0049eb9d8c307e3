r"""True responses over a grid of (deal, course) pairs without a row per pair.

A world generated with ``bundles = "grid"`` pairs every deal with every course and never lists
the pairs: at 1,000 deals per city x 200 courses a design row per bundle would take gigabytes. The
response model of :mod:`bandit_engine.simulation.response` separates over the pair's parts. Every
block of the design vector ``phi`` belongs to the deal (constant, cuisine, price, discount, city,
the restaurant's share of the hidden quality) or to the course (topic, format, price, rating, the
course's share of the quality), except two terms:

* the topic x cuisine complementarity ``S[topic_c, cuisine_d]`` inside the bundle quality, and
* the hidden bundle factors ``g_{dc}`` (the bundle's own taste profile, ``noise_rank`` numbers).

So for a user with coefficient matrix ``W_u`` (columns: click, order given click)::

    z_k(d, c) = D_u[d, k] + C_u[c, k] + w_{q,k} S[topic_c, cuisine_d] + g_{dc} . w_{h,k}

with ``D_u = Phi_D W_u`` and ``C_u = Phi_C W_u`` computed once per deal and per course, and the
expected reward ``sigma(z_0) (click + sigma(z_1) (order + value_weight * basket_u (v_d + v_c)))``.

The best pair (the oracle of a decision) is found exactly by branch and bound over deals: with
non-negative reward weights the expected reward increases in both logits and in the order value,
so a deal's pairs are bounded by the reward at ``D_u[d, k] + max_c (C_u[c, k] + w_{q,k}
S[topic_c, cuisine_d]) + ||w_{h,k}|| max_c ||g_{dc}||`` (Cauchy-Schwarz on the hidden term, the
complementarity maximised per cuisine). Deals are scored exactly in blocks in decreasing order of
that bound until the next bound cannot beat the best pair found. Negative weights fall back to
scoring every pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .population import CourseTruth, DealTruth
from .response import Layout, _sigmoid_inplace, bundle_design, bundle_value

__all__ = ["GridTruth", "grid_best", "pair_rows", "side_designs"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Deals scored exactly per block of the branch and bound: large enough for numpy to pay off,
# small enough that a user whose best deal is clear scores few pairs.
_BLOCK = 32


@dataclass(frozen=True, eq=False)
class GridTruth:
    """The pair-independent parts of a grid world's bundles.

    Attributes
    ----------
    deal_design, course_design
        ``Phi_D`` (``n_deals x m``) and ``Phi_C`` (``n_courses x m``): each part's blocks of the
        design vector, the quality column holding only its own share.
    synergy
        ``S`` (topics x cuisines), the complementarity added to the quality column.
    deal_cuisine, course_topic
        Each deal's cuisine and each course's topic (indices into ``S``).
    deal_value, course_value
        ``v_d = price (1 - discount)`` and ``v_c = course_value_share * price``.
    hidden
        ``g_{dc}``, shape ``(n_deals, n_courses, noise_rank)`` (float32 to halve the memory).
    hidden_norm
        ``max_c ||g_{dc}||`` per deal (the bound's hidden term).
    """

    deal_design: FloatArray
    course_design: FloatArray
    synergy: FloatArray
    deal_cuisine: IntArray
    course_topic: IntArray
    deal_value: FloatArray
    course_value: FloatArray
    hidden: NDArray[np.float32]
    hidden_norm: FloatArray


def side_designs(
    layout: Layout,
    deal_design_full: FloatArray,
    course_design_full: FloatArray,
    deal_quality: FloatArray,
    course_quality: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Split full design rows into the deal's and the course's parts.

    ``deal_design_full`` holds :func:`~.response.bundle_design` rows of every deal paired with a
    fixed course, ``course_design_full`` of every course paired with a fixed deal; the course
    (deal) blocks are cleared from the first (second) and the quality column gets each part's
    own share (``0.1 q_d`` and ``0.08 q_c``; the complementarity is kept apart).
    """
    D = deal_design_full.copy()
    C = course_design_full.copy()
    course_cols: list[int | slice] = [layout.topic, layout.format, layout.clp, layout.rating]
    deal_cols: list[int | slice] = [
        layout.const,
        layout.cuisine,
        layout.lp,
        layout.lp2,
        layout.discount,
        layout.city,
    ]
    for col in course_cols:
        D[:, col] = 0.0
    for col in deal_cols:
        C[:, col] = 0.0
    D[:, layout.hidden] = 0.0
    C[:, layout.hidden] = 0.0
    D[:, layout.quality] = 0.1 * deal_quality
    C[:, layout.quality] = 0.08 * course_quality
    return D, C


def pair_rows(
    layout: Layout,
    truth: GridTruth,
    deals: DealTruth,
    courses: CourseTruth,
    deal_idx: IntArray,
    course_idx: IntArray,
    course_value_share: float,
) -> tuple[FloatArray, FloatArray]:
    """Full design rows and order values of the pairs ``(deal_idx[i], course_idx[i])``."""
    hidden = truth.hidden[deal_idx, course_idx].astype(np.float64)
    phi = bundle_design(layout, deals, courses, deal_idx, course_idx, hidden)
    value = bundle_value(deals, courses, deal_idx, course_idx, course_value_share)
    return phi, value


def grid_best(
    layout: Layout,
    truth: GridTruth,
    W: FloatArray,
    basket: float,
    deal_idx: IntArray,
    course_idx: IntArray,
    weights: tuple[float, float, float],
) -> tuple[float, int, int]:
    """The best expected reward over ``deal_idx x course_idx`` for one user, exactly.

    Parameters
    ----------
    W
        The user's ``(m, 2)`` coefficient matrix at the decision's time (intercepts included).
    basket
        The user's order-value multiplier.
    deal_idx, course_idx
        The offered deals and courses (world rows); every pair of them is a candidate.
    weights
        ``(click, order, value_weight)``.

    Returns
    -------
    ``(value, deal, course)``: the best expected reward and its pair (world rows).
    """
    click, order, value_w = weights
    nd, nc = deal_idx.shape[0], course_idx.shape[0]
    if nd == 0 or nc == 0:
        raise ValueError("grid_best needs at least one deal and one course")
    Dz = truth.deal_design[deal_idx] @ W  # (nd, 2)
    Cz = truth.course_design[course_idx] @ W  # (nc, 2)
    wq = W[layout.quality]  # (2,)
    wh = W[layout.hidden]  # (r, 2)
    topic = truth.course_topic[course_idx]
    cuisine = truth.deal_cuisine[deal_idx]
    S_c = truth.synergy[topic]  # (nc, n_cuisines): a course's complementarity with each cuisine
    vd = basket * truth.deal_value[deal_idx]
    vc = basket * truth.course_value[course_idx]
    monotone = click >= 0.0 and order >= 0.0 and value_w >= 0.0
    if monotone:
        # per cuisine, the best course side of each logit (complementarity included)
        best_c = np.stack(
            [(Cz[:, k : k + 1] + wq[k] * S_c).max(axis=0) for k in range(2)]
        )  # (2, n_cuisines)
        hid = truth.hidden_norm[deal_idx]
        zc = Dz[:, 0] + best_c[0, cuisine] + hid * float(np.linalg.norm(wh[:, 0]))
        zo = Dz[:, 1] + best_c[1, cuisine] + hid * float(np.linalg.norm(wh[:, 1]))
        pc = 1.0 / (1.0 + np.exp(-zc))
        po = 1.0 / (1.0 + np.exp(-zo))
        bound = pc * (click + po * (order + value_w * (vd + float(vc.max()))))
        order_ = np.argsort(-bound, kind="stable")
    else:
        bound = np.full(nd, np.inf)
        order_ = np.arange(nd)
    best, best_d, best_c_ = -np.inf, -1, -1
    for start in range(0, nd, _BLOCK):
        rows = order_[start : start + _BLOCK]
        if bound[rows[0]] <= best:
            break
        g = truth.hidden[deal_idx[rows][:, None], course_idx[None, :]]  # (b, nc, r) float32
        h = g.astype(np.float64) @ wh  # (b, nc, 2)
        syn = S_c[:, cuisine[rows]].T  # (b, nc)
        z0 = Dz[rows, 0][:, None] + Cz[None, :, 0] + wq[0] * syn + h[:, :, 0]
        z1 = Dz[rows, 1][:, None] + Cz[None, :, 1] + wq[1] * syn + h[:, :, 1]
        pc = _sigmoid_inplace(z0)
        po = _sigmoid_inplace(z1)
        reward = pc * (click + po * (order + value_w * (vd[rows][:, None] + vc[None, :])))
        flat = int(np.argmax(reward))
        value = float(reward.flat[flat])
        if value > best:
            i, j = divmod(flat, nc)
            best, best_d, best_c_ = value, int(deal_idx[rows[i]]), int(course_idx[j])
    return best, best_d, best_c_
