"""Policies: every one implements :class:`~bandit_engine.policies.base.Policy`.

Contextual: :class:`LinUCB` (disjoint), :class:`HybridLinUCB` (shared user x bundle part plus a
per-bundle part), :class:`LinearTS` (linear Thompson sampling: :class:`DisjointLinearTS` or
:class:`SharedLinearTS` by ``mode``). Control
groups: :class:`UniformRandom`, :class:`EpsilonGreedy`, :class:`Popularity`,
:class:`FixedRule`. Grid policies (:class:`~bandit_engine.policies.base.GridPolicy`) choose among
every (deal, course) pair of a catalog without a row per pair: :class:`FactoredUCB`,
:class:`FactoredTS` (``factored_ucb``, ``factored_ts``). Build any of them by name with :func:`make_policy`; the Vowpal Wabbit
back-end is registered lazily and imported only when asked for.
"""

from __future__ import annotations

from .base import BasePolicy, GridPolicy, Policy
from .baselines import EpsilonGreedy, FixedRule, Popularity, UniformRandom
from .factored import FactoredTS, FactoredUCB
from .hybrid import HybridLinUCB
from .linucb import LinUCB
from .registry import (
    POLICIES,
    make_policy,
    policy_from_dict,
    policy_params,
    policy_to_dict,
    register_policy,
)
from .thompson import DisjointLinearTS, LinearTS, SharedLinearTS

__all__ = [
    "POLICIES",
    "BasePolicy",
    "DisjointLinearTS",
    "EpsilonGreedy",
    "FactoredTS",
    "FactoredUCB",
    "FixedRule",
    "GridPolicy",
    "HybridLinUCB",
    "LinUCB",
    "LinearTS",
    "Policy",
    "Popularity",
    "SharedLinearTS",
    "UniformRandom",
    "make_policy",
    "policy_from_dict",
    "policy_params",
    "policy_to_dict",
    "register_policy",
]
