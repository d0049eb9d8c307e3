"""The record of a policy evaluation (:class:`PolicyEvaluation`) and the warnings it carries when
the data cannot support a confident answer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..records import Estimate
from .support import SupportStats
from .uplift import Uplift

__all__ = [
    "MAX_CLIPPED_SHARE",
    "MIN_ESS",
    "MIN_MATCHES",
    "MIN_NONZERO_REWARDS",
    "PolicyEvaluation",
    "evaluation_warnings",
]


#: Below this many non-zero rewards a warning says the intervals are wide and the normal
#: approximation shaky (a click-through rate of 0.4% gives 40 clicks per 10,000 rows).
MIN_NONZERO_REWARDS = 30
#: Below this effective sample size of the importance weights a warning says a few rows dominate.
MIN_ESS = 100.0
#: Below this many matched rows a replay estimate is flagged as resting on too little data.
MIN_MATCHES = 30
#: Above this share of clipped (or switched) rows a warning says the estimate is biased by it.
MAX_CLIPPED_SHARE = 0.05


@dataclass(frozen=True, eq=False)
class PolicyEvaluation:
    """The result of :func:`~bandit_engine.evaluation.dispatch.evaluate_policy` /
    :func:`~bandit_engine.evaluation.dispatch.evaluate_action_dist`.

    Attributes
    ----------
    policy
        Description of the evaluated policy.
    method
        How its action distribution was obtained (``"exact"``, ``"sampled(N)"``, ``"given"``);
        ``"online"`` when only online replay ran.
    n_rows, n_actions
        Logged rows evaluated and number of actions.
    n_nonzero_rewards
        Rows with a non-zero reward (clicks, for click logs): what the precision rests on.
    logged
        The logging policy's value: the on-policy mean reward of the log (``estimator="logged"``).
    estimates, uplifts
        Per estimator (in the order requested): the candidate's value, and its uplift over
        ``logged``.
    skipped
        Estimators that could not run on this log, with the reason (DataError message).
    warnings
        When the data cannot support a confident answer (few non-zero rewards, tiny effective
        sample size, few replay matches, many clipped weights, skipped estimators).
    settings
        The evaluation settings (estimators, reward model, interval, seed ...).
    support
        Support of the evaluated policy by the logging policy on the evaluated rows
        (:mod:`~bandit_engine.evaluation.support`), or ``None`` when the log has no (complete)
        propensities. When it is missing, every uplift has ``supported=False`` (never
        significant) and the first warning says so.
    """

    policy: str
    method: str
    n_rows: int
    n_actions: int
    n_nonzero_rewards: int
    logged: Estimate
    estimates: dict[str, Estimate]
    uplifts: dict[str, Uplift]
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    support: SupportStats | None = None

    @property
    def supported(self) -> bool:
        """The log supports the evaluated policy (``True`` when it cannot be judged: no pscore)."""
        return self.support is None or self.support.supported

    def to_dict(self) -> dict[str, Any]:
        """Plain data with stable keys (non-finite numbers are kept as floats; see report)."""
        return {
            "policy": self.policy,
            "method": self.method,
            "n_rows": self.n_rows,
            "n_actions": self.n_actions,
            "n_nonzero_rewards": self.n_nonzero_rewards,
            "logged": self.logged.to_dict(),
            "estimates": [
                {**est.to_dict(), "uplift": self.uplifts[name].to_dict()}
                for name, est in self.estimates.items()
            ],
            "skipped": [{"estimator": k, "reason": v} for k, v in self.skipped.items()],
            "warnings": list(self.warnings),
            "settings": dict(self.settings),
            "support": None if self.support is None else self.support.to_dict(),
        }


def evaluation_warnings(
    n_rows: int,
    n_nonzero: int,
    estimates: Mapping[str, Estimate],
    skipped: Mapping[str, str],
    support: SupportStats | None = None,
) -> list[str]:
    """The warnings of an evaluation, the loudest first (missing support)."""
    out: list[str] = []
    message = support.message() if support is not None else None
    if message is not None:
        out.append(message)
    if n_nonzero < MIN_NONZERO_REWARDS:
        out.append(
            f"only {n_nonzero} of {n_rows} rows have a non-zero reward (clicks): the estimates "
            "rest on very few events, so they are imprecise and their normal intervals "
            "unreliable (too narrow with so few events, a single point with none); treat them "
            "as indicative only"
        )
    for name, est in estimates.items():
        if name in ("replay", "online_replay"):
            if est.n < MIN_MATCHES:
                out.append(
                    f"{name}: only {est.n} of {n_rows} rows matched the policy's choice: the "
                    "estimate rests on too few rows"
                )
            continue
        if not math.isnan(est.ess) and est.ess < MIN_ESS:
            out.append(
                f"{name}: effective sample size {est.ess:.1f} of {est.n} rows (largest weight "
                f"{est.max_weight:.3g}): a few rows dominate the estimate"
            )
        if est.clipped_share > MAX_CLIPPED_SHARE:
            out.append(
                f"{name}: {100 * est.clipped_share:.1f}% of the weights were clipped or switched "
                "to the model: the estimate is biased towards the reward model / downwards"
            )
    for name, reason in skipped.items():
        out.append(f"{name} skipped: {reason}")
    return out
