"""The engines of a run, one per arm: labels, seeded policies, deterministic ids.

Each policy and each control group of a scenario is an *arm*: a report label, a role and a
:class:`~bandit_engine.simulation.policy_spec.PolicySpec`. Its engine is a real
:class:`~bandit_engine.Engine` from :func:`bandit_engine.simulation.engines.build_engine`, with a
fixed model id, deterministic decision ids and no clock of its own (the simulator passes every
timestamp).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine import Engine
from ..errors import ConfigError
from ..policies.base import Policy
from ..policies.registry import make_policy
from ..rewards import RewardSpec
from .engines import build_engine
from .policy_spec import PolicySpec
from .scenario import Scenario
from .streams import seed_streams
from .world import World

__all__ = [
    "ArmSpec",
    "arm_specs",
    "build_arm_engine",
    "catalog_feature_names",
    "check_columns",
    "make_arm_policy",
]


@dataclass(frozen=True)
class ArmSpec:
    """One engine in a run: a report ``label``, its ``role`` and its policy spec."""

    label: str
    role: str  # "policy" or "control"
    spec: PolicySpec


def arm_specs(policies: Sequence[PolicySpec], controls: Sequence[PolicySpec]) -> list[ArmSpec]:
    """Label every policy and control uniquely: its ``label``, else its name, else its name with
    hyperparameters, else that with ``#2``, ``#3``..."""
    specs = [("policy", p) for p in policies] + [("control", c) for c in controls]
    # a name is ambiguous only among the specs that have no label of their own
    names = [p.name if p.label is None else None for _, p in specs]
    out: list[ArmSpec] = []
    used: set[str] = set()
    for (role, spec), name in zip(specs, names, strict=True):
        if spec.label is not None:
            label = spec.label
        elif names.count(name) == 1:
            label = spec.name
        else:
            label = spec.describe()
        base, n = label, 2
        while label in used:
            label = f"{base} #{n}"
            n += 1
        used.add(label)
        out.append(ArmSpec(label, role, spec))
    return out


def _resolve_column(spec_kwargs: dict[str, Any], names: Sequence[str], where: str) -> None:
    col = spec_kwargs.get("column")
    if isinstance(col, str):
        if col not in names:
            plain = [n for n in names if "=" not in n]
            raise ConfigError.for_field(
                f"{where}.column",
                col,
                f"is not a bundle feature (numeric ones: {plain}; one-hot ones look like "
                "'deal.cuisine=hotpot')",
            )
        spec_kwargs["column"] = list(names).index(col)


def check_columns(scenario: Scenario) -> None:
    """Resolve every ``fixed_rule`` column given by name against the catalog of the first seed's
    world, so a misspelt name fails before the run (naming the entry and the file)."""
    groups = [("policies", scenario.policies), ("controls", scenario.controls)]
    named = [
        (f"{key}[{i}]", spec)
        for key, specs in groups
        for i, spec in enumerate(specs)
        if isinstance(spec.kwargs.get("column"), str)
    ]
    if not named:
        return
    rs = seed_streams(scenario.run.seed, scenario.run.world_seed)
    names = catalog_feature_names(World.generate(scenario.world, seed=rs.world_seed))
    for where, spec in named:
        try:
            _resolve_column(spec.kwargs, names, where)
        except ConfigError as exc:
            prefix = f"{scenario.source}: " if scenario.source else ""
            raise ConfigError(prefix + exc.message, field=exc.field, value=exc.value) from None


def make_arm_policy(
    spec: PolicySpec, *, seed: int, feature_names: Sequence[str], where: str = "policy"
) -> Policy:
    """The policy of a spec, seeded with ``seed`` unless the spec sets its own."""
    kwargs = spec.kwargs
    kwargs.setdefault("seed", seed)
    _resolve_column(kwargs, feature_names, where)
    return make_policy(spec.name, **kwargs)


def build_arm_engine(
    world: World,
    spec: PolicySpec,
    *,
    rewards: RewardSpec,
    policy_seed: int,
    model_id: str,
    id_prefix: str,
    feature_names: Sequence[str],
) -> Engine:
    """A real engine for ``world`` (:func:`bandit_engine.simulation.engines.build_engine`) with a deterministic
    model id and decision ids ``<id_prefix>-0000001``, ...; ``now`` is always passed explicitly."""
    policy = make_arm_policy(spec, seed=policy_seed, feature_names=feature_names, where=spec.name)
    counter = itertools.count(1)

    def next_id() -> str:
        return f"{id_prefix}-{next(counter):07d}"

    return build_engine(
        world,
        policy,
        rewards=rewards,
        id_factory=next_id,
        clock=_no_clock,
        model_id=model_id,  # uuid4 by default: a fixed id keeps logs and versions reproducible
    )


def _no_clock() -> float:
    raise RuntimeError("the simulator passes every timestamp explicitly")


def catalog_feature_names(world: World) -> list[str]:
    """Bundle feature names of an engine built on ``world`` (to resolve ``fixed_rule`` columns)."""
    probe_policy = "grid_uniform" if world.is_grid else "uniform"
    probe = build_engine(world, make_policy(probe_policy, seed=0), load_profiles=False)
    return list(probe.catalog.feature_names)
