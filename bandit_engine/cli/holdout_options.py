"""The holdout options shared by ``bandit serve-policy`` and ``bandit learn``: ``--holdout``,
``--holdout-policy`` and ``--holdout-salt`` turned into a :class:`~bandit_engine.holdout.HoldoutPlan`
(the policy specs use the simulator's ``NAME[:key=value,...]`` parser, one syntax everywhere)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..holdout import HoldoutPlan

__all__ = ["holdout_plan"]


def holdout_plan(
    holdout: Sequence[str] | None, holdout_policy: Sequence[str] | None, salt: str
) -> HoldoutPlan | None:
    """The plan of the options, ``None`` when neither is given (a
    :class:`~bandit_engine.errors.ConfigError` names the option that is wrong)."""
    if not holdout and not holdout_policy:
        return None
    from ..errors import ConfigError
    from ..holdout import HoldoutPlan
    from ..simulation.policy_spec import parse_policy_spec

    specs = [parse_policy_spec(p, option="--holdout-policy") for p in holdout_policy or []]
    if not holdout:
        raise ConfigError.for_field(
            "holdout", [], "must be given (SHARE or NAME=SHARE) with --holdout-policy"
        )
    return HoldoutPlan.from_options(holdout, [(s.name, dict(s.params)) for s in specs], salt=salt)
