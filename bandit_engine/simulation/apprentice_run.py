"""Apprentice mode on the simulator: an apprentice engine against the rule alone, paired.

Two engines see the same world, the same users at the same times and the same outcome draws
(common random numbers): one serves the rule alone, the other is in apprentice mode
(:class:`~bandit_engine.policies.apprentice.ApprenticePolicy` with the same rule and seed, and a
learner), checking the switch rule (:func:`~bandit_engine.evaluation.apprentice.check_switch`) every
``check_every`` decisions. Before the switch the two must serve the same bundle every time (the
apprentice serves the rule's choice; :class:`ApprenticeRun` records both so a caller can check
it); after it, the uplift of the learner over the rule is the difference of the true expected
rewards of what each served (the world's known rates, as the simulator's oracle uses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..engine import Engine
from ..evaluation.apprentice import ApprenticeStatus, SwitchThresholds, check_switch, status
from ..policies.apprentice import ApprenticePolicy
from ..policies.registry import make_policy
from ..rewards import RewardSpec
from .engines import DEMO_REWARDS, build_engine
from .world import World

__all__ = ["ApprenticeRun", "run_apprentice"]


@dataclass(frozen=True, eq=False)
class ApprenticeRun:
    """One paired run. Arrays have one entry per decision."""

    served: NDArray[np.object_]  # the apprentice engine's bundle
    rule: NDArray[np.object_]  # the rule engine's bundle
    apprentice_value: NDArray[np.float64]  # true expected reward of what the apprentice served
    rule_value: NDArray[np.float64]
    switch_at: int | None  # index of the first decision served by the learner
    forced: bool  # the switch was told (force_at), not decided by the switch rule
    status_at_switch: ApprenticeStatus | None
    final_status: ApprenticeStatus


def _pick_column(engine: Engine, name: str) -> int:
    names = list(engine.catalog.feature_names)
    if name not in names:
        raise ValueError(f"{name!r} is not a bundle feature ({names})")
    return names.index(name)


def run_apprentice(
    world: World,
    *,
    rounds: int,
    seed: int,
    rule_column: str = "deal.discount",
    rule_epsilon: float = 0.1,
    learner: str | Mapping[str, Any] = "linucb",
    thresholds: SwitchThresholds | None = None,
    check_every: int = 250,
    force_at: int | None = None,
) -> ApprenticeRun:
    """Run ``rounds`` paired decisions. The switch rule is checked every ``check_every``
    decisions; ``force_at`` tells the switch at that decision if the rule has not switched by
    then (``None``: never told). ``learner``: a registered name or ``{"name", "params"}``
    (its seed defaults to ``seed + 1``; a ``fixed_rule`` may name its column)."""
    th = thresholds if thresholds is not None else SwitchThresholds()
    probe = build_engine(world, make_policy("uniform"), load_profiles=False)
    column = _pick_column(probe, rule_column)
    rule_params = {"column": column, "epsilon": rule_epsilon, "seed": seed}
    # the demo reward weights with a 10-minute window: the demo world's 2,000 users arrive about
    # 20,000 times a day, and a day-long window would keep most of a short run unlearned
    rewards = RewardSpec(click=1.0, order=2.0, value_weight=0.01, window=600.0)
    rule_engine = build_engine(world, make_policy("fixed_rule", **rule_params), rewards=rewards)
    spec: dict[str, Any] = (
        {"name": learner, "params": {}} if isinstance(learner, str) else dict(learner)
    )
    params: dict[str, Any] = {"seed": seed + 1, **dict(spec.get("params") or {})}
    policy = ApprenticePolicy(
        rule={"name": "fixed_rule", "params": rule_params},
        learner={"name": spec["name"], "params": params},
        seed=seed,
    )
    app_engine = build_engine(world, policy, rewards=rewards)
    rng = np.random.default_rng(seed + 7)
    times, users = world.arrivals(rounds, rng)
    draws = rng.random((rounds, 2))
    served = np.empty(rounds, dtype=object)
    ruled = np.empty(rounds, dtype=object)
    app_value = np.zeros(rounds)
    rule_value = np.zeros(rounds)
    switched: int | None = None
    forced = False
    at_switch: ApprenticeStatus | None = None
    for i in range(rounds):
        t, u = float(times[i]), int(users[i])
        user_id = world.user_id(u)
        for engine, out, values in (
            (app_engine, served, app_value),
            (rule_engine, ruled, rule_value),
        ):
            d = engine.decide(user_id, decision_id=f"d{i}", now=t)
            out[i] = d.bundle_id
            b = world.bundle_indices([d.bundle_id])
            values[i] = float(world.expected_reward(u, b, t, DEMO_REWARDS)[0])
            pc, po, v = world.true_rates(u, b, t)
            if draws[i, 0] < pc[0]:
                engine.report(d.decision_id, "click", at=t)
                if draws[i, 1] < po[0]:
                    engine.report(d.decision_id, "order", value=float(v[0]), at=t + 60.0)
        if switched is None and (i + 1) % check_every == 0:
            st = check_switch(app_engine, th)
            if st.ready:
                switched, at_switch = i + 1, st
            elif force_at is not None and i + 1 >= force_at:
                policy.switch()
                switched, forced, at_switch = i + 1, True, st
    return ApprenticeRun(
        served, ruled, app_value, rule_value, switched, forced, at_switch, status(app_engine, th)
    )
