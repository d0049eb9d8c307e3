"""Frozen records that flow between the engine, the event log, the simulator and the evaluators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Choice",
    "Decision",
    "Estimate",
    "EventType",
    "LearnedReward",
    "OutcomeEvent",
    "PairChoice",
    "PairGrid",
    "RewardStatus",
]

EventType = Literal["click", "order"]
RewardStatus = Literal["pending", "learned", "default", "late"]


@dataclass(frozen=True, eq=False)
class Choice:
    """What a policy returns for one context: a position in the candidate list.

    Attributes
    ----------
    index
        Position of the chosen arm in the candidate list passed to ``choose``.
    propensity
        Probability with which the policy chose this arm, in (0, 1].
    scores
        One score per candidate (policy-specific: UCB, sampled value, estimated mean ...).
    probabilities
        The policy's full distribution over the candidates when it is known exactly, else ``None``.
    """

    index: int
    propensity: float
    scores: NDArray[np.float64]
    probabilities: NDArray[np.float64] | None = None


@dataclass(frozen=True, eq=False)
class PairGrid:
    """Every eligible deal paired with every eligible course, described by its parts.

    A catalog of ``n_deals x n_courses`` pairs is never listed pair by pair: a structured policy
    (:mod:`bandit_engine.policies.factored`) scores a pair from its deal row, its course row and
    the pairing cell ``(deal_cell[d], course_cell[c])`` (for example cuisine x topic).

    Attributes
    ----------
    deal_ids, course_ids
        The eligible deals and courses. Pair ``(i, j)`` is deal ``deal_ids[i]`` with course
        ``course_ids[j]``.
    deal_features, course_features
        One row per deal / course, shape ``(n_deals, k_deal)`` / ``(n_courses, k_course)``: the
        deal's (course's) side of the pair row for this user (its own attributes, and user x part
        terms such as profile-match flags).
    deal_cell, course_cell
        The pairing category of each deal and course, integers in ``[0, n_deal_cells)`` and
        ``[0, n_course_cells)``.
    n_deal_cells, n_course_cells
        Sizes of the pairing table (its cell ``(g, h)`` is one shared parameter).
    allowed
        ``None`` when every pair is a candidate, else a ``(n_deals, n_courses)`` mask of the pairs
        that are (a catalog with an explicit bundle list is a grid with holes).
    """

    deal_ids: tuple[str, ...]
    course_ids: tuple[str, ...]
    deal_features: NDArray[np.float64]
    course_features: NDArray[np.float64]
    deal_cell: NDArray[np.intp]
    course_cell: NDArray[np.intp]
    n_deal_cells: int
    n_course_cells: int
    allowed: NDArray[np.bool_] | None = None

    @property
    def size(self) -> int:
        """Number of candidate pairs (``len(deal_ids) * len(course_ids)`` without a mask)."""
        if self.allowed is not None:
            return int(np.count_nonzero(self.allowed))
        return len(self.deal_ids) * len(self.course_ids)


@dataclass(frozen=True, eq=False)
class PairChoice:
    """What a structured policy returns for a :class:`PairGrid`.

    Attributes
    ----------
    deal, course
        Positions of the chosen deal and course in the grid.
    propensity
        The exact probability with which the policy chose this pair among all ``grid.size``.
    score
        The chosen pair's score (upper confidence bound or sampled value).
    scored
        How many pairs were scored exactly to prove the choice is the argmax (the rest were
        excluded by upper bounds); ``grid.size`` when every pair was scored.
    """

    deal: int
    course: int
    propensity: float
    score: float
    scored: int


@dataclass(frozen=True, eq=False)
class Decision:
    """One decision made by an :class:`~bandit_engine.Engine`.

    ``candidates`` and ``scores`` are aligned; ``propensity`` is the probability of ``bundle_id``
    under the policy at decision time, which offline evaluation needs. ``x`` (the context vector)
    and ``z`` (the chosen bundle's feature vector) are what the policy will learn from; the event
    log stores them with the decision. They are not part of :meth:`to_dict`.

    A grid policy's decision (``n_candidates`` set) chose among ``n_candidates`` pairs that are not
    listed: ``candidates`` holds only the chosen bundle and ``scores`` its score; the eligible set
    is the catalog's grid for the user's city at ``timestamp``.
    """

    decision_id: str
    bundle_id: str
    deal_id: str
    course_id: str
    propensity: float
    candidates: tuple[str, ...]
    scores: tuple[float, ...]
    policy_version: str
    timestamp: float
    probabilities: tuple[float, ...] | None = None
    x: NDArray[np.float64] | None = field(default=None, repr=False)
    z: NDArray[np.float64] | None = field(default=None, repr=False)
    n_candidates: int | None = None
    #: how the bundle was chosen when not by the policy alone: ``"fallback:bundle"``,
    #: ``"fallback:policy"`` (business rules left nothing), ``"apprentice:rule"`` /
    #: ``"apprentice:policy"`` (apprentice mode); ``None`` for a plain policy decision
    mode: str | None = None
    #: holdout group that chose (``"policy"`` or a holdout's name; ``None`` without a plan)
    group: str | None = None
    #: reporting segment of the user: platform presence (``knowledge``, ``groupbuy``, ``both``,
    #: ``neither``) and city (``None`` unknown)
    presence: str | None = None
    city: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "decision_id": self.decision_id,
            "bundle_id": self.bundle_id,
            "deal_id": self.deal_id,
            "course_id": self.course_id,
            "propensity": self.propensity,
            "candidates": list(self.candidates),
            "scores": list(self.scores),
            "policy_version": self.policy_version,
            "timestamp": self.timestamp,
            "probabilities": None if self.probabilities is None else list(self.probabilities),
        }
        if self.n_candidates is not None:  # grid decisions only: listed ones keep their layout
            out["n_candidates"] = self.n_candidates
        if self.mode is not None:
            out["mode"] = self.mode
        if self.group is not None:  # holdout plans only
            out["group"] = self.group
        return out


@dataclass(frozen=True)
class OutcomeEvent:
    """A click or an order reported for a decision."""

    decision_id: str
    type: EventType
    timestamp: float
    value: float = 0.0
    event_id: str | None = None


@dataclass(frozen=True, eq=False)
class LearnedReward:
    """What the engine learned (or decided not to learn) when a decision's window closed."""

    decision_id: str
    bundle_id: str
    reward: float
    status: RewardStatus
    n_events: int
    closed_at: float


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate with its 95% confidence interval and weight diagnostics.

    Attributes
    ----------
    estimator
        Name of the estimator (``"ips"``, ``"dr"`` ...).
    value
        Point estimate of the evaluated policy's mean reward per decision.
    ci_low, ci_high
        Bounds of the confidence interval (level ``level``).
    std_error
        Standard error used for the normal interval (``nan`` when not defined).
    n
        Number of logged rows used.
    ess
        Effective sample size of the importance weights, ``(sum w)^2 / sum w^2``.
    max_weight
        Largest importance weight.
    clipped_share
        Share of rows whose weight was clipped.
    ci_method
        ``"normal"`` or ``"bootstrap"``.
    level
        Coverage level of the interval.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    ess: float = float("nan")
    max_weight: float = float("nan")
    clipped_share: float = 0.0
    ci_method: str = "normal"
    level: float = 0.95
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "std_error": self.std_error,
            "n": self.n,
            "ess": self.ess,
            "max_weight": self.max_weight,
            "clipped_share": self.clipped_share,
            "ci_method": self.ci_method,
            "level": self.level,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }
