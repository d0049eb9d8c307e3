"""Apprentice mode's controller: agreement, the off-policy estimate and the switch.

The policy side is :class:`~bandit_engine.policies.apprentice.ApprenticePolicy` (serve the rule,
train the learner). This module decides when to switch, and switches.

Switch rule (:class:`SwitchThresholds`, all must hold):

1. at least ``min_decisions`` rule decisions have closed and entered the estimate (the estimate
   and the rule's value use the last ``recent`` of them: the learner keeps changing, and its
   early self would drag the estimate down);
2. the agreement (the learner's mean probability of the rule's choice over its last ``window``
   decisions) is at least ``min_agreement``: the learner has learned the rule's territory;
3. the lower bound of the ``level`` (95%) interval of the SNIPS estimate of the learner's value on
   the rule's traffic (:func:`bandit_engine.evaluation.snips`, weights
   ``p_learner(a_rule) / p_rule(a_rule)``) is above the rule's own value, the mean reward of the
   same decisions, plus ``margin``: the learner is better with 95% confidence, not just as good.
   SNIPS rather than DR: the learners' own per-arm estimates, the only reward model at hand
   online, are inflated on the arms they pick (the winner's curse), and a DR built on them gave
   values ten times any reward seen in the simulator.

The agreement floor is 0 by default: a learner that beats the rule must disagree with it, and the
interval of 3 already guards against switching on noise; raise ``min_agreement`` to also require
that the learner imitates the rule that much. The estimate needs support: it sees the learner's
choices only where the rule put probability, so serve a rule that explores
(``fixed_rule:epsilon=0.1``); with a deterministic rule it rests on the reward model alone.

Forcing the switch (:func:`switch`, ``POST /v1/admin/apprentice/switch``) skips the checks. A
:class:`~bandit_engine.service.LoggedEngine` journals the switch as the admin op
``apprentice_switch`` (rolled forward at its place after a restart), and every decision's mode is
in the log's ``decision_modes`` table. The server hands :func:`check_switch` to its
``LoggedEngine`` (``apprentice_check``), which runs it every 200 learned rewards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import ConfigError, DataError
from ..policies.apprentice import ApprenticePolicy
from .snips import snips

__all__ = [
    "ApprenticeStatus",
    "SwitchThresholds",
    "apprentice_of",
    "check_switch",
    "status",
    "switch",
]


@dataclass(frozen=True)
class SwitchThresholds:
    """When apprentice mode switches on its own (see the module docstring)."""

    min_decisions: int = 2000
    min_agreement: float = 0.0
    margin: float = 0.0
    level: float = 0.95
    recent: int = 10_000

    def __post_init__(self) -> None:
        if (
            isinstance(self.min_decisions, bool)
            or not isinstance(self.min_decisions, int)
            or (self.min_decisions < 1)
        ):
            raise ConfigError.for_field(
                "min_decisions", self.min_decisions, "must be an integer >= 1"
            )
        if not (0.0 <= float(self.min_agreement) <= 1.0):
            raise ConfigError.for_field("min_agreement", self.min_agreement, "must be in [0, 1]")
        if not math.isfinite(float(self.margin)):
            raise ConfigError.for_field("margin", self.margin, "must be a finite number")
        if not (0.5 <= float(self.level) < 1.0):
            raise ConfigError.for_field("level", self.level, "must be in [0.5, 1)")
        if isinstance(self.recent, bool) or not isinstance(self.recent, int) or self.recent < 1:
            raise ConfigError.for_field("recent", self.recent, "must be an integer >= 1")


@dataclass(frozen=True)
class ApprenticeStatus:
    """Where apprentice mode stands (what ``GET /v1/admin/apprentice`` returns)."""

    mode: str
    rule: str
    learner: str
    rule_decisions: int
    evaluated: int
    agreement: float
    rule_value: float
    learner_value: float
    learner_ci_low: float
    learner_ci_high: float
    ready: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def apprentice_of(engine: Engine) -> ApprenticePolicy:
    """The engine's apprentice policy; a :class:`ConfigError` when it serves none."""
    policy = engine.policy
    if not isinstance(policy, ApprenticePolicy):
        raise ConfigError.for_field(
            "policy", getattr(policy, "name", "?"), "is not in apprentice mode (see --apprentice)"
        )
    return policy


def status(engine: Engine, thresholds: SwitchThresholds | None = None) -> ApprenticeStatus:
    """Agreement, the rule's value and the SNIPS estimate of the learner, and whether the switch
    rule holds."""
    th = thresholds if thresholds is not None else SwitchThresholds()
    ap = apprentice_of(engine)
    # the learner of late, not its early self: only the last `recent` closed decisions
    rows = np.asarray(ap.eval_rows_[-th.recent :], dtype=np.float64).reshape(-1, 3)
    n = rows.shape[0]
    nan = float("nan")
    rule_value = float(rows[:, 2].mean()) if n else nan
    est_v = lo = hi = nan
    if n:
        try:
            est = snips(
                reward=rows[:, 2],
                action=np.zeros(n, dtype=np.intp),
                pscore=rows[:, 1],
                action_prob=rows[:, 0],
                level=th.level,
            )
            est_v, lo, hi = est.value, est.ci_low, est.ci_high
        except DataError:  # every weight 0: the learner never plays the rule's choices
            pass
    agreement = ap.agreement
    if ap.mode == "policy":
        ready, reason = False, "switched"
    elif n < th.min_decisions:
        ready, reason = False, f"{n} of {th.min_decisions} rule decisions evaluated"
    elif not agreement >= th.min_agreement:
        ready, reason = False, f"agreement {agreement:.3f} < {th.min_agreement}"
    elif not lo > rule_value + th.margin:
        ready, reason = (
            False,
            (
                f"learner's lower bound {lo:.4f} is not above the rule's value {rule_value:.4f}"
                + (f" + {th.margin}" if th.margin else "")
            ),
        )
    else:
        ready, reason = True, "agreement and the off-policy estimate pass"
    return ApprenticeStatus(
        ap.mode,
        ap.rule_.name,
        ap.learner_.name,
        ap.n_rule_decisions_,
        n,
        agreement,
        rule_value,
        est_v,
        lo,
        hi,
        ready,
        reason,
    )


def switch(engine: Engine) -> bool:
    """Serve the learner from now on; ``False`` when it already does (not journaled: a served
    engine switches through :meth:`LoggedEngine.apprentice_switch
    <bandit_engine.service.LoggedEngine.apprentice_switch>`)."""
    ap = apprentice_of(engine)
    if ap.mode == "policy":
        return False
    ap.switch()
    return True


def check_switch(engine: Engine, thresholds: SwitchThresholds | None = None) -> ApprenticeStatus:
    """:func:`status`, and :func:`switch` when the switch rule holds (the returned status is the
    one that decided)."""
    st = status(engine, thresholds)
    if st.ready:
        switch(engine)
    return st
