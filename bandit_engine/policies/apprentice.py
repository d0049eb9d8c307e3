"""Apprentice mode: serve a rule's choices while a learning policy learns from them.

:class:`ApprenticePolicy` wraps a *rule* (any policy, typically ``fixed_rule`` or ``popularity``)
and a *learner*. In mode ``"rule"`` every choice, score and propensity is the rule's, so before the
switch the served decision is exactly what the rule alone would have served (same generator draws:
the rule is called first and alone decides); the learner is updated with the rule's chosen bundle,
its reward and the rule's propensity (off-policy: ridge-type policies learn the reward of what was
shown and need no weight; policies that use the propensity, such as VW's, get it). For each
decision the learner's probability of the rule's choice, ``p_L(a_rule | x)``, is computed with
:meth:`probabilities` (no draw from the learner's generator that the rule's choice depends on):

* its running mean over the last ``window`` decisions is the *agreement* (the expected share of
  decisions on which the learner would have chosen what the rule chose);
* with the reward that decision later learns, it is one row of an off-policy estimate of the
  learner's value on the rule's traffic (weights ``p_L(a_rule) / p_rule(a_rule)``, stratified by
  the number of arms the rule chose among; :mod:`bandit_engine.evaluation.apprentice`). The
  learner's probability is taken before it learns that decision's reward (progressive
  validation), so each row is an honest out-of-sample test of the learner of that time.

In mode ``"policy"`` (after the switch) it is the learner, unchanged. The mode of each decision is
its :attr:`serving_mode` (``"apprentice:rule"`` / ``"apprentice:policy"``), which the engine puts
on the :class:`~bandit_engine.records.Decision` and the event log records.

Limits: the rows of the off-policy estimate are matched to their rewards by the context vector
and the bundle (an ``update`` gets no decision id); decisions still pending at a restart from a
checkpoint do not enter the estimate. The estimate measures the learner only where the rule put
probability: a deterministic rule (``epsilon = 0``) gives it no support off the rule's choices,
so give the rule some exploration (``fixed_rule:epsilon=0.1``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ValidationError
from ..records import Choice
from .base import BasePolicy, BoolArray, FloatArray, Policy, SeedLike

__all__ = ["ApprenticePolicy"]

_STASH = 200_000
_MAX_ROWS = 1_000_000


def _build(spec: Any, field: str, seed: int | None) -> Policy:
    from .registry import make_policy, policy_from_dict  # the registry names this module

    if isinstance(spec, str):
        return make_policy(spec, seed=seed)
    if isinstance(spec, Mapping) and "name" in spec:
        params = dict(spec.get("params") or {})
        if params.get("seed") is None:
            params["seed"] = seed
        return policy_from_dict({"name": spec["name"], "params": params})
    if hasattr(spec, "choose") and hasattr(spec, "get_params"):
        return spec  # type: ignore[no-any-return]
    raise ConfigError.for_field(field, spec, "must be a policy, a name or {'name', 'params'}")


class ApprenticePolicy(BasePolicy):
    """Serve ``rule`` and train ``learner`` until the switch (see the module docstring).

    Parameters
    ----------
    rule, learner
        Policies, registered names, or ``{"name": ..., "params": {...}}``.
    mode
        ``"rule"`` (apprentice: serve the rule) or ``"policy"`` (switched: serve the learner).
    window
        Decisions over which the agreement is averaged.
    seed
        Unused (each wrapped policy has its own generator); kept for the common signature.
    """

    name = "apprentice"
    _param_names = ("rule", "learner", "mode", "window")

    def __init__(
        self,
        *,
        rule: Any = "fixed_rule",
        learner: Any = "linucb",
        mode: str = "rule",
        window: int = 1000,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        if mode not in ("rule", "policy"):
            raise ConfigError.for_field("mode", mode, "must be 'rule' or 'policy'")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError.for_field("window", window, "must be an integer >= 1")
        # wrapped policies named without a seed get one drawn from this seed (reproducible)
        seeds = self.rng_.integers(0, 2**31 - 1, size=2).tolist()
        self.rule_ = _build(rule, "rule", int(seeds[0]))
        self.learner_ = _build(learner, "learner", int(seeds[1]))
        self.mode = mode
        self.window = window
        self.pair_features = bool(getattr(self.learner_, "pair_features", False))
        self.agreement_: deque[float] = deque(maxlen=window)
        self.n_rule_decisions_ = 0
        self.switched_at_: int | None = None  # n_rule_decisions_ when it switched
        #: p_L(a_rule) of the last decision (the event log records it with the mode)
        self.target_propensity_: float | None = None
        self._stash: OrderedDict[tuple[bytes, str], list[tuple[float, int]]] = OrderedDict()
        # closed rule decisions, one row each (see eval_rows_), in a growing array so that the
        # switch check reads them without conversion
        self._eval = np.empty((0, 4))
        self._n_eval = 0

    def bind_feature_names(self, names: Sequence[str]) -> None:
        """Tell the rule and the learner the bundle feature names (a rule may name its column,
        ``fixed_rule:column=deal.discount``)."""
        for part in (self.rule_, self.learner_):
            bind = getattr(part, "bind_feature_names", None)
            if callable(bind):
                bind(names)

    # parameters as plain data (the wrapped policies by name and params)
    @property
    def rule(self) -> dict[str, Any]:
        return {"name": self.rule_.name, "params": self.rule_.get_params()}

    @property
    def learner(self) -> dict[str, Any]:
        return {"name": self.learner_.name, "params": self.learner_.get_params()}

    @property
    def serving_mode(self) -> str:
        return f"apprentice:{self.mode}"

    @property
    def static_columns(self) -> int | None:
        return getattr(self.learner_, "static_columns", None)

    @static_columns.setter
    def static_columns(self, value: int | None) -> None:
        if hasattr(self.learner_, "static_columns"):
            self.learner_.static_columns = value

    @property
    def agreement(self) -> float:
        """Mean learner probability of the rule's choice over the last ``window`` decisions
        (NaN before the first)."""
        return float(np.mean(self.agreement_)) if self.agreement_ else float("nan")

    def switch(self) -> None:
        """Serve the learner from now on (idempotent)."""
        if self.mode != "policy":
            self.mode = "policy"
            self.switched_at_ = self.n_rule_decisions_

    # -- the Policy protocol -------------------------------------------------------------------
    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        # the mask is passed on only when there is one (a wrapped policy written before the
        # mask existed still works without rules)
        more = () if mask is None else (mask,)
        if self.mode == "policy":
            self.target_propensity_ = None
            return self.learner_.choose(x, arms, arm_features, *more)
        choice = self.rule_.choose(x, arms, arm_features, *more)
        # the learner's probability over the same (masked) set the rule chose from
        probs = self.learner_.probabilities(x, arms, arm_features, *more)
        self.n_rule_decisions_ += 1
        if probs is None:  # a learner without exact probabilities: no agreement, no estimate
            self.target_propensity_ = None
            return choice
        i = choice.index
        p = float(probs[i])
        self.target_propensity_ = p
        self.agreement_.append(p)
        # the number of arms the rule chose among: the stratum of the off-policy estimate
        k = len(arms) if mask is None else int(np.count_nonzero(mask))
        key = (np.asarray(x, dtype=np.float64).tobytes(), arms[i])
        held = self._stash.get(key)
        if held is None:
            if len(self._stash) >= _STASH:
                self._stash.popitem(last=False)
            self._stash[key] = [(p, k)]
        else:
            held.append((p, k))
        return choice

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        key = (np.asarray(x, dtype=np.float64).tobytes(), arm)
        held = self._stash.get(key)
        if held:
            p, k = held.pop(0)
            if not held:
                del self._stash[key]
            self._add_eval_row(p, float(propensity), float(reward), float(k))
        self.learner_.update(x, arm, arm_features, reward, propensity)
        self.rule_.update(x, arm, arm_features, reward, propensity)
        self.n_updates_ += 1

    @property
    def eval_rows_(self) -> FloatArray:
        """Closed rule decisions, oldest first, the newest 1,000,000: ``(learner probability of
        the rule's choice, rule propensity, reward, number of arms the rule chose among)`` (a
        read-only view)."""
        view = self._eval[: self._n_eval]
        view.flags.writeable = False
        return view

    def _add_eval_row(self, p_learner: float, p_rule: float, reward: float, k: float) -> None:
        n = self._n_eval
        if n == self._eval.shape[0]:
            if n >= _MAX_ROWS:  # the oldest tenth goes
                drop = _MAX_ROWS // 10
                self._eval[: n - drop] = self._eval[drop:n]
                n = self._n_eval = n - drop
            else:
                grown = np.empty((min(_MAX_ROWS, max(1024, 2 * n)), 4))
                grown[:n] = self._eval[:n]
                self._eval = grown
        self._eval[n] = (p_learner, p_rule, reward, k)
        self._n_eval = n + 1

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray | None:
        served = self.learner_ if self.mode == "policy" else self.rule_
        return served.probabilities(x, arms, arm_features, *(() if mask is None else (mask,)))

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """The learner's scores (what it would serve after the switch)."""
        return self.learner_.score_batch(X, arms, arm_features)

    def get_state(self) -> dict[str, Any]:
        rows = self.eval_rows_.copy()
        rule, learner = self.rule_.get_state(), self.learner_.get_state()
        return {
            # the wrapped generators (each policy restores its own from its state)
            "rng": {"rule": rule.get("rng"), "learner": learner.get("rng")},
            "rule": rule,
            "learner": learner,
            "mode": self.mode,
            "agreement": np.asarray(self.agreement_, dtype=np.float64),
            "n_rule_decisions": self.n_rule_decisions_,
            "switched_at": self.switched_at_,
            "n_updates": self.n_updates_,
            "eval_rows": rows,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        try:
            self.rule_.set_state(state["rule"])
            self.learner_.set_state(state["learner"])
            mode = str(state["mode"])
            if mode not in ("rule", "policy"):
                raise ValueError(f"mode {mode!r}")
            self.mode = mode
            self.agreement_ = deque(
                (float(v) for v in np.asarray(state["agreement"], dtype=np.float64)),
                maxlen=self.window,
            )
            self.n_rule_decisions_ = int(state["n_rule_decisions"])
            sw = state["switched_at"]
            self.switched_at_ = None if sw is None else int(sw)
            self.n_updates_ = int(state["n_updates"])
            rows = np.asarray(state["eval_rows"], dtype=np.float64)
            if rows.ndim == 2 and rows.shape[1] == 3:  # saved before the strata: one stratum
                rows = np.column_stack([rows, np.zeros(rows.shape[0])])
            rows = rows.reshape(-1, 4)
            self._eval = np.array(rows, dtype=np.float64)
            self._n_eval = rows.shape[0]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError.for_field(
                "policy.state", type(exc).__name__, f"is not an apprentice state ({exc})"
            ) from None
