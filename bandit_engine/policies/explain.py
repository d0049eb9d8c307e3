"""Why a policy prefers a bundle: each candidate's estimated reward, its exploration term, and
the features that moved the estimate most.

A policy that can say this has a method ``explain_arms(x, arms, arm_features)`` returning
:class:`ArmEstimates`: for every candidate, the estimated mean reward, the exploration term
(``"exploration bonus"`` for UCB policies: what the score adds to the mean; ``"posterior sd"`` for
Thompson sampling: the spread its draw is taken from), and the linear pieces the mean is the sum
of. :func:`explain_choice` turns them into an :class:`Explanation` with readable names.

The estimate is linear in known inputs for every policy that has the method, so each feature's
effect ``coefficient x value`` is exact, and the effects sum to the estimate:

* disjoint LinUCB and linear TS: ``mean_a = theta_a . x`` (``x_coef[a] = theta_a``);
* hybrid LinUCB: ``mean_a = beta . (z_a (x) x) + theta_a . x`` with
  ``theta_a = A_a^{-1} (b_a - B_a' beta)`` (Li et al. 2010, Alg. 2, rewritten);
* pair policies: ``mean_a = beta . s_a + theta_a`` (the shared regression over the candidate's
  row, plus the bundle's own effect).

Policies without it (Vowpal Wabbit, whose model is not linear in readable features; the baselines,
which rank by counts or a column) give a clear "not available" instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._arrays import FloatArray

__all__ = ["ArmEstimates", "Explanation", "FeatureEffect", "explain_choice"]


@dataclass(frozen=True, eq=False)
class ArmEstimates:
    """What a policy estimates for each of ``k`` candidates (see the module docstring).

    ``mean[i] = x_coef[i] . x + z_coef[i] . Z[i] + xz_coef[i] . vec(x (x) Z[i]) + offset[i]``
    (``vec`` row-major: entry ``j * p + l`` is ``x_j Z[i, l]``), each term present when its array
    is not ``None`` (``z_coef`` and ``xz_coef`` may also be one shared row).
    """

    mean: FloatArray
    spread: FloatArray
    spread_kind: str
    x_coef: FloatArray | None = None
    z_coef: FloatArray | None = None
    xz_coef: FloatArray | None = None
    offset: FloatArray | None = None
    offset_name: str = "bundle's own effect"


@dataclass(frozen=True)
class FeatureEffect:
    """One feature's share of the estimate: ``effect = coefficient * value``."""

    name: str
    value: float
    coefficient: float
    effect: float


@dataclass(frozen=True)
class Explanation:
    """Why the chosen bundle: its estimate and exploration term, the runner-up, and the features
    that moved its estimate most (``top``, largest ``|effect|`` first; ``rest`` is the sum of the
    other effects, so ``sum(top) + rest == estimate``)."""

    decision_id: str
    policy: str
    policy_version: str
    bundle_id: str
    estimate: float
    spread: float
    spread_kind: str
    score: float | None
    runner_up: dict[str, Any] | None
    top: tuple[FeatureEffect, ...]
    rest: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the server's ``?explain=1``)."""
        return {
            "decision_id": self.decision_id,
            "policy": self.policy,
            "policy_version": self.policy_version,
            "bundle_id": self.bundle_id,
            "estimated_reward": self.estimate,
            self.spread_kind.replace(" ", "_"): self.spread,
            "score": self.score,
            "runner_up": self.runner_up,
            "top_features": [
                {"name": e.name, "value": e.value, "coefficient": e.coefficient, "effect": e.effect}
                for e in self.top
            ],
            "other_features_effect": self.rest,
            "notes": list(self.notes),
        }


def _row(coef: FloatArray | None, i: int) -> FloatArray | None:
    if coef is None:
        return None
    return coef if coef.ndim == 1 else coef[i]


def explain_choice(
    policy: Any,
    x: FloatArray,
    arms: Sequence[str],
    arm_features: FloatArray,
    chosen: int,
    *,
    x_names: Sequence[str],
    z_names: Sequence[str],
    decision_id: str,
    policy_version: str,
    top_k: int = 5,
    notes: Sequence[str] = (),
) -> Explanation:
    """The :class:`Explanation` of choosing ``arms[chosen]`` with ``policy`` now.

    Raises :class:`~bandit_engine.errors.ConfigError` for a policy without ``explain_arms``."""
    explain = getattr(policy, "explain_arms", None)
    name = getattr(policy, "name", type(policy).__name__)
    if not callable(explain):
        raise ConfigError(
            f"explanations are not available for policy {name!r}: its estimate is not a sum of "
            "readable feature effects (they cover linucb, lin_ts in disjoint mode, "
            "hybrid_linucb, pair_ucb and pair_ts)",
            field="explain",
            value=name,
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError.for_field("top_k", top_k, "must be an integer >= 1")
    est: ArmEstimates = explain(x, arms, arm_features)
    z = arm_features[chosen]
    names: list[str] = []
    values: list[FloatArray] = []
    coefs: list[FloatArray] = []
    xc = _row(est.x_coef, chosen)
    if xc is not None:
        names += list(x_names)
        values.append(x)
        coefs.append(xc)
    zc = _row(est.z_coef, chosen)
    if zc is not None:
        names += list(z_names)
        values.append(z)
        coefs.append(zc)
    xzc = _row(est.xz_coef, chosen)
    if xzc is not None:
        names += [f"{xn} x {zn}" for xn in x_names for zn in z_names]
        values.append(np.outer(x, z).ravel())
        coefs.append(xzc)
    if est.offset is not None:
        names.append(est.offset_name)
        values.append(np.ones(1))
        coefs.append(np.array([est.offset[chosen]]))
    v = np.concatenate(values) if values else np.zeros(0)
    c = np.concatenate(coefs) if coefs else np.zeros(0)
    effects = v * c
    order = np.argsort(-np.abs(effects), kind="stable")
    keep = [int(j) for j in order[:top_k] if effects[j] != 0.0]
    top = tuple(FeatureEffect(names[j], float(v[j]), float(c[j]), float(effects[j])) for j in keep)
    rest = float(effects.sum() - sum(e.effect for e in top))
    mean, spread = est.mean, est.spread
    ucb = est.spread_kind == "exploration bonus"
    runner: dict[str, Any] | None = None
    if len(arms) > 1:
        rank = mean + spread if ucb else mean
        others = [i for i in range(len(arms)) if i != chosen]
        j = max(others, key=lambda i: float(rank[i]))
        runner = {
            "bundle_id": arms[j],
            "estimated_reward": float(mean[j]),
            est.spread_kind.replace(" ", "_"): float(spread[j]),
            "score": float(mean[j] + spread[j]) if ucb else None,
        }
    return Explanation(
        decision_id=decision_id,
        policy=name,
        policy_version=policy_version,
        bundle_id=arms[chosen],
        estimate=float(mean[chosen]),
        spread=float(spread[chosen]),
        spread_kind=est.spread_kind,
        score=float(mean[chosen] + spread[chosen]) if ucb else None,
        runner_up=runner,
        top=top,
        rest=rest,
        notes=tuple(notes),
    )
