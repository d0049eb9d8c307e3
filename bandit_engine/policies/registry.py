"""Policies by name: construction from configuration and (de)serialisation as plain data.

The registry maps a policy ``name`` to ``"module:Class"`` and imports the module only when that
policy is asked for, so optional back-ends (Vowpal Wabbit) cost nothing at
``import bandit_engine`` time. A back-end is added by one entry in ``_BUILTIN`` below or, from
outside the package, by :func:`register_policy`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any, cast

from ..errors import ConfigError, ValidationError
from .base import Policy

__all__ = [
    "POLICIES",
    "make_policy",
    "policy_from_dict",
    "policy_params",
    "policy_to_dict",
    "register_policy",
]

_BUILTIN: dict[str, str] = {
    "linucb": "bandit_engine.policies.linucb:LinUCB",
    "hybrid_linucb": "bandit_engine.policies.hybrid:HybridLinUCB",
    "lin_ts": "bandit_engine.policies.thompson:LinearTS",
    "uniform": "bandit_engine.policies.baselines:UniformRandom",
    "epsilon_greedy": "bandit_engine.policies.baselines:EpsilonGreedy",
    "popularity": "bandit_engine.policies.baselines:Popularity",
    "fixed_rule": "bandit_engine.policies.baselines:FixedRule",
    "vw": "bandit_engine.policies.vw:VWPolicy",
    "pair_ucb": "bandit_engine.policies.pair:PairUCB",
    "pair_ts": "bandit_engine.policies.pair:PairTS",
    "factored_ucb": "bandit_engine.policies.factored:FactoredUCB",
    "factored_ts": "bandit_engine.policies.factored:FactoredTS",
    "grid_uniform": "bandit_engine.policies.grid_baselines:GridUniform",
    "grid_popularity": "bandit_engine.policies.grid_baselines:GridPopularity",
    "apprentice": "bandit_engine.policies.apprentice:ApprenticePolicy",
    "dp_linucb": "bandit_engine.policies.private_linucb:PrivateLinUCB",
}


class PolicyRegistry(Mapping[str, type]):
    """Read-only mapping ``name -> policy class`` that imports each class on first access."""

    def __init__(self, targets: Mapping[str, str | type]) -> None:
        self._targets: dict[str, str | type] = dict(targets)

    def __getitem__(self, name: str) -> type:
        target = self._targets[name]
        if isinstance(target, type):
            return target
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"policy {name!r} is registered as {target!r} but could not be loaded: {exc}",
                field="name",
                value=name,
            ) from exc
        if getattr(cls, "name", None) != name:
            raise ConfigError(
                f"policy {name!r} resolves to {target!r} whose name is "
                f"{getattr(cls, 'name', None)!r}",
                field="name",
                value=name,
            )
        self._targets[name] = cls
        return cast(type, cls)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._targets))

    def __len__(self) -> int:
        return len(self._targets)

    def _register(self, name: str, target: str | type) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError.for_field("name", name, "must be a non-empty string")
        if isinstance(target, str) and ":" not in target:
            raise ConfigError.for_field("target", target, "must look like 'package.module:Class'")
        self._targets[name] = target


#: ``name -> policy class`` for every known policy (classes are imported on first access).
POLICIES = PolicyRegistry(_BUILTIN)


def register_policy(name: str, target: str | type) -> None:
    """Register (or replace) a policy class, given as a class or lazily as ``"module:Class"``."""
    POLICIES._register(name, target)


def _policy_class(name: str) -> type:
    if not isinstance(name, str) or name not in POLICIES:
        raise ConfigError.for_field("name", name, f"must be one of {list(POLICIES)}")
    return POLICIES[name]


def policy_params(name: str) -> list[str]:
    """The keyword arguments policy ``name`` accepts."""
    sig = inspect.signature(_policy_class(name))
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]


def make_policy(name: str, **params: Any) -> Policy:
    """Build policy ``name`` from keyword arguments.

    Raises :class:`~bandit_engine.errors.ConfigError` for an unknown name or parameter (listing
    the valid ones) and for invalid values (the policy's own validation).
    """
    cls = _policy_class(name)
    valid = policy_params(name)
    for key in params:
        if key not in valid:
            raise ConfigError.for_field(
                f"{name}.{key}", params[key], f"is not a parameter of {name!r}; valid: {valid}"
            )
    return cast(Policy, cls(**params))


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """``{"name", "params", "state"}`` of a policy: plain data, arrays stay numpy arrays."""
    return {"name": policy.name, "params": policy.get_params(), "state": policy.get_state()}


def policy_from_dict(data: Mapping[str, Any]) -> Policy:
    """Rebuild a policy from :func:`policy_to_dict` output (validated; ``state`` optional)."""
    if not isinstance(data, Mapping):
        raise ValidationError.for_field("policy", type(data).__name__, "must be a mapping")
    unknown = sorted(set(data) - {"name", "params", "state"})
    if unknown:
        raise ValidationError.for_field(
            "policy", unknown, "has unknown keys (expected name, params, state)"
        )
    if "name" not in data:
        raise ValidationError.for_field("policy.name", "missing", "is required")
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValidationError.for_field("policy.params", params, "must be a mapping")
    policy = make_policy(data["name"], **params)
    state = data.get("state")
    if state is not None:
        if not isinstance(state, Mapping):
            raise ValidationError.for_field(
                "policy.state", type(state).__name__, "must be a mapping"
            )
        policy.set_state(state)
    return policy
