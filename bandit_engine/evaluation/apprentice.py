"""Apprentice mode's controller: agreement, the off-policy estimate and the switch.

The policy side is :class:`~bandit_engine.policies.apprentice.ApprenticePolicy` (serve the rule,
train the learner). This module decides when to switch, and switches.

Switch rule (:class:`SwitchThresholds`, all must hold):

1. at least ``min_decisions`` rule decisions have closed and entered the estimate (it uses the
   last ``recent`` of them);
2. the agreement (the learner's mean probability of the rule's choice over its last ``window``
   decisions) is at least ``min_agreement`` (0 by default: a learner that beats the rule must
   disagree with it);
3. the estimate has support: the effective sample size of the importance weights (Kish's
   ``(sum w)^2 / sum w^2``, summed over the strata below) is at least ``min_ess``;
4. the one-sided ``level`` lower confidence bound of the *difference* ``V(learner) - V(rule)`` on
   the same decisions is above ``margin``: the learner is better with that confidence.

The estimate. Each closed rule decision ``i`` is a row ``(p_L, p_R, r, k)``: the learner's
probability of the rule's choice taken *before* the learner learned that reward (progressive
validation, Blum, Kalai & Langford, COLT 1999: every row is an out-of-sample test of the learner
of its time), the rule's propensity, the reward and the number of arms the rule chose among.
Rows are stratified by ``k`` (a function of the context, not of the action, so each stratum is a
sub-population): in stratum ``s`` the learner's value is SNIPS, ``sum w r / sum w`` with
``w = p_L / p_R``, the rule's the mean reward of the same rows, and their difference has the
paired delta-method influence ``w (r - V_L) / mean(w) - (r - V_R)``; strata are combined with
weights ``n_s / n`` (post-stratification). This is the high-confidence off-policy improvement
test of Thomas, Theocharous & Ghavamzadeh (ICML 2015) with a normal bound on the paired,
stratified estimate. A stratum in which the learner never plays the rule's choices carries no
information about the learner: its learner value is counted as 0 (rewards are >= 0), which can
only make the test more conservative.

Why the old rule (SNIPS over the last 10,000 rows, its two-sided 95% lower bound against the
rule's mean) never fired in the simulator: the estimate is starved, not mainly biased. A ``fixed_rule`` with
``epsilon = 0.2`` shows an arm other than its own choice with probability ``0.2 / k``; the
learner disagrees with the rule on ~98% of decisions, so its value rests on the rows where the
rule's exploration happened to play the learner's choice, with weights up to ``k / 0.2`` (1,200
for the 240-bundle list of users without a city). Those few heavy rows make the Kish ESS of 30,000
decisions about 56 (interval half-width ~0.1 against an uplift of ~0.02). Stratifying by ``k``
stops the heavy strata from swamping the large light one, the support floor stops a handful of
heavy rows from deciding, and the window holds all closed decisions up to ``recent`` (50,000).
The rule's value is estimated on the same rows, on policy (precise); that is what the paired
influence accounts for. Where the rule's traffic supports the learner the test fires, and it does
not for a worse learner (benchmarks/README.md, tests/test_apprentice.py); on a 20%-exploring
rule's traffic the support stays too small to certify a ``linucb`` learner within 40,000
decisions, and the switch has to be told.

Limits, stated: the learner is judged by its past selves over the window (it improves, so the
test is conservative); checking every few hundred decisions is repeated testing, which raises the
chance of a false switch above ``1 - level`` when the two are equally good (``margin`` and
``min_ess`` guard against the early, noisy looks; an anytime-valid bound would be exact but
wider); and with little exploration in the rule no unbiased estimate can certify the learner
quickly: the support, ``min_ess``, grows like ``n epsilon / k``.

Forcing the switch (:func:`switch`, ``POST /v1/admin/apprentice/switch``) skips the checks. A
:class:`~bandit_engine.service.LoggedEngine` journals the switch as the admin op
``apprentice_switch`` (rolled forward at its place after a restart), and every decision's mode is
in the log's ``decision_modes`` table. The server hands :func:`check_switch` to its
``LoggedEngine`` (``apprentice_check``), which runs it every 200 learned rewards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..engine import Engine
from ..errors import ConfigError
from ..policies.apprentice import ApprenticePolicy
from ._validate import FloatArray

__all__ = [
    "ApprenticeStatus",
    "PairedEstimate",
    "SwitchThresholds",
    "apprentice_of",
    "check_switch",
    "paired_estimate",
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
    recent: int = 50_000
    min_ess: float = 200.0

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
        if not (math.isfinite(float(self.min_ess)) and float(self.min_ess) >= 0.0):
            raise ConfigError.for_field("min_ess", self.min_ess, "must be a number >= 0")


@dataclass(frozen=True)
class ApprenticeStatus:
    """Where apprentice mode stands (what ``GET /v1/admin/apprentice`` returns).

    ``learner_ci_low`` / ``learner_ci_high`` bound the learner's value, ``difference`` is
    ``V(learner) - V(rule)`` and ``difference_ci_low`` its one-sided lower bound (the switch
    test), ``ess`` the effective sample size of the weights (all at ``level``)."""

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
    difference: float = float("nan")
    difference_ci_low: float = float("nan")
    ess: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass(frozen=True)
class PairedEstimate:
    """The stratified, paired off-policy estimate of the module docstring (standard errors,
    not bounds)."""

    learner_value: float
    learner_se: float
    rule_value: float
    difference: float
    difference_se: float
    ess: float


def paired_estimate(rows: FloatArray) -> PairedEstimate:
    """The learner's value, the rule's and their difference from rows ``(p_L, p_R, r, k)``
    (see the module docstring); ``k = 0`` rows (saved before strata existed) form one stratum.

    Per stratum ``s`` of ``n_s`` rows, ``V_L = sum w r / sum w`` (``w = p_L / p_R``) with
    influence ``w (r - V_L) / mean(w)``, ``V_R = mean r`` with influence ``r - V_R``; the
    estimates are ``sum_s (n_s / n) V_s`` and their variances ``sum_s (n_s / n)^2 var(infl) /
    n_s``. A stratum with ``sum w = 0`` counts ``V_L = 0`` (no information; rewards >= 0).
    """
    n = rows.shape[0]
    if n == 0:
        nan = float("nan")
        return PairedEstimate(nan, nan, nan, nan, nan, 0.0)
    p_l, p_r, r, k = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    v_l = v_r = var_l = var_d = ess = 0.0
    for stratum in np.unique(k):
        m = k == stratum
        ns = int(np.count_nonzero(m))
        share = ns / n
        rs = r[m]
        w = p_l[m] / p_r[m]
        rule = float(rs.mean())
        infl_r = rs - rule
        total = float(w.sum())
        if total > 0.0:
            learner = float((w * rs).sum() / total)
            infl_l = w * (rs - learner) / (total / ns)
            ess += total * total / float((w * w).sum())
        else:
            learner, infl_l = 0.0, np.zeros(ns)
        v_l += share * learner
        v_r += share * rule
        if ns > 1:
            var_l += share * share * float(infl_l.var(ddof=1)) / ns
            var_d += share * share * float((infl_l - infl_r).var(ddof=1)) / ns
    return PairedEstimate(v_l, math.sqrt(var_l), v_r, v_l - v_r, math.sqrt(var_d), ess)


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
    rows = ap.eval_rows_[-th.recent :]
    n = rows.shape[0]
    est = paired_estimate(rows)
    z = float(NormalDist().inv_cdf(th.level))  # one-sided
    z2 = float(NormalDist().inv_cdf(0.5 + th.level / 2))  # the learner's two-sided interval
    diff_lo = est.difference - z * est.difference_se
    agreement = ap.agreement
    if ap.mode == "policy":
        ready, reason = False, "switched"
    elif n < th.min_decisions:
        ready, reason = False, f"{n} of {th.min_decisions} rule decisions evaluated"
    elif not agreement >= th.min_agreement:
        ready, reason = False, f"agreement {agreement:.3f} < {th.min_agreement}"
    elif not est.ess >= th.min_ess:
        ready, reason = False, f"effective sample size {est.ess:.0f} < {th.min_ess:g}"
    elif not diff_lo > th.margin:
        ready, reason = (
            False,
            f"the lower bound {diff_lo:.4f} of learner - rule ({est.difference:+.4f}) is not "
            f"above {th.margin:g}",
        )
    else:
        ready, reason = True, "the learner is better than the rule at the set confidence"
    return ApprenticeStatus(
        ap.mode,
        ap.rule_.name,
        ap.learner_.name,
        ap.n_rule_decisions_,
        n,
        agreement,
        est.rule_value,
        est.learner_value,
        est.learner_value - z2 * est.learner_se,
        est.learner_value + z2 * est.learner_se,
        ready,
        reason,
        est.difference,
        diff_lo,
        est.ess,
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
