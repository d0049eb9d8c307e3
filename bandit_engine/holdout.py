"""Holdout groups: a share of users kept on a control policy, bucketed stickily by pseudonym.

A :class:`HoldoutPlan` lists groups ``(name, share, policy)``. A user's bucket is

``u = int(SHA-256(salt || 0x00 || pseudonym)[:8]) / 2**64``, uniform on ``[0, 1)``,

where ``pseudonym`` is the event log's keyed pseudonym ``HMAC-SHA256(key, user_id)``
(:mod:`bandit_engine.store.keys`), so the bucket is a keyed hash of the user: the same on every
server sharing the key and after every restart, and unpredictable without the key. The groups take
consecutive intervals of ``[0, 1)`` in the order given (``[0, s_1)``, ``[s_1, s_1 + s_2)``, ...);
the rest is the served policy, group :data:`POLICY_GROUP`. Appending a group later moves only
users of the policy group. Changing ``salt`` re-randomises everyone.

Each group's policy learns only from its own group's decisions (the engine routes the reward back
to the policy that chose); fixed rules (``fixed_rule``, ``uniform``) learn nothing by design, so
they stay the same control throughout. A decision without a user id cannot be sticky: it is
bucketed by its decision id (each such decision is its own user in the reports).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .policies import Policy
from .policies.registry import POLICIES, make_policy, policy_params

__all__ = [
    "MAX_HOLDOUT_SHARE",
    "POLICY_GROUP",
    "HoldoutGroup",
    "HoldoutPlan",
    "bucket_of",
]

#: The group of users served by the engine's own policy.
POLICY_GROUP = "policy"
#: A holdout may keep at most half the users: beyond that it is the treatment, not the control.
MAX_HOLDOUT_SHARE = 0.5
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def bucket_of(salt: str, pseudonym: str) -> float:
    """The user's position in ``[0, 1)``: the first 8 bytes of ``SHA-256(salt, pseudonym)``."""
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + pseudonym.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class HoldoutGroup:
    """One holdout group.

    Parameters
    ----------
    name
        The group's name in the log and the reports (lower-case letters, digits, ``_``, ``-``;
        not ``policy``).
    share
        Share of users in the group, in ``(0, 0.5]``.
    policy
        A registered policy name (``popularity``, ``uniform``, ``fixed_rule``, ...).
    params
        Its keyword parameters (validated by the policy).
    """

    name: str
    share: float
    policy: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name
            or len(self.name) > 32
            or not set(self.name) <= _NAME_CHARS
        ):
            raise ConfigError.for_field(
                "holdout name", self.name, "must be 1-32 lower-case letters, digits, '_' or '-'"
            )
        if self.name == POLICY_GROUP:
            raise ConfigError.for_field(
                "holdout name", self.name, "is reserved for the served policy's group"
            )
        share = self.share
        if (
            isinstance(share, bool)
            or not isinstance(share, int | float)
            or not math.isfinite(share)
            or not 0.0 < share <= MAX_HOLDOUT_SHARE
        ):
            raise ConfigError.for_field(
                "holdout", share, f"must be a share in (0, {MAX_HOLDOUT_SHARE}]"
            )
        if self.policy not in POLICIES:
            raise ConfigError.for_field(
                "holdout_policy", self.policy, f"must be a registered policy ({sorted(POLICIES)})"
            )
        object.__setattr__(self, "share", float(share))
        object.__setattr__(self, "params", dict(self.params))

    def make(self, seed: int) -> Policy:
        """A fresh policy for the group (``seed`` unless the params name one)."""
        params = dict(self.params)
        if "seed" in policy_params(self.policy) and "seed" not in params:
            params["seed"] = seed
        try:
            return make_policy(self.policy, **params)
        except ConfigError as exc:
            raise ConfigError(
                f"holdout_policy {self.policy!r}: {exc.message}", field=exc.field, value=exc.value
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "share": self.share,
            "policy": self.policy,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class HoldoutPlan:
    """The holdout groups of an engine and the salt of their bucketing (see the module doc).

    Raises :class:`~bandit_engine.errors.ConfigError` for no groups, two groups of one name, or
    shares adding up to 1 or more (the served policy would get no users).
    """

    groups: tuple[HoldoutGroup, ...]
    salt: str = "holdout-v1"

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        if not groups:
            raise ConfigError.for_field("holdout", [], "must name at least one group")
        names = [g.name for g in groups]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError.for_field("holdout name", name, "is given twice")
        total = sum(g.share for g in groups)
        if total >= 1.0:
            raise ConfigError.for_field(
                "holdout", [g.share for g in groups], "shares must add up to less than 1"
            )
        if not isinstance(self.salt, str) or not self.salt:
            raise ConfigError.for_field("holdout_salt", self.salt, "must be a non-empty string")
        object.__setattr__(self, "groups", groups)

    @property
    def names(self) -> tuple[str, ...]:
        """Every group name, the served policy's first."""
        return (POLICY_GROUP, *(g.name for g in self.groups))

    def shares(self) -> dict[str, float]:
        """``{group: configured share}``, the served policy's included."""
        out = {POLICY_GROUP: 1.0 - sum(g.share for g in self.groups)}
        out.update({g.name: g.share for g in self.groups})
        return out

    def assign(self, pseudonym: str) -> str:
        """The group of a user (by pseudonym) or of an anonymous decision (by its id)."""
        u = bucket_of(self.salt, pseudonym)
        edge = 0.0
        for g in self.groups:
            edge += g.share
            if u < edge:
                return g.name
        return POLICY_GROUP

    def to_dict(self) -> dict[str, Any]:
        return {"salt": self.salt, "groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HoldoutPlan:
        try:
            groups = tuple(
                HoldoutGroup(
                    str(g["name"]), g["share"], str(g["policy"]), dict(g.get("params") or {})
                )
                for g in data["groups"]
            )
            return cls(groups, str(data.get("salt", "holdout-v1")))
        except (KeyError, TypeError) as exc:
            raise ConfigError.for_field("holdout", dict(data), f"is malformed ({exc})") from None

    @classmethod
    def from_options(
        cls,
        shares: Sequence[str],
        policies: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        salt: str = "holdout-v1",
    ) -> HoldoutPlan:
        """The plan of ``--holdout`` values (``SHARE`` or ``NAME=SHARE``) paired in order with
        ``--holdout-policy`` values (already parsed to ``(name, params)``). Without any
        ``--holdout-policy`` every group is ``uniform`` (a random control); otherwise there must
        be one per ``--holdout``. A group is named after its policy unless named."""
        if policies and len(policies) != len(shares):
            raise ConfigError.for_field(
                "holdout_policy",
                [p for p, _ in policies],
                f"must be given once per --holdout ({len(shares)}), or not at all (uniform)",
            )
        pairs = list(policies) if policies else [("uniform", {})] * len(shares)
        groups: list[HoldoutGroup] = []
        for text, (policy, params) in zip(shares, pairs, strict=True):
            name, eq, raw = str(text).rpartition("=")
            if not eq:
                name = policy if policy not in [g.name for g in groups] else ""
                name = name or f"holdout_{len(groups) + 1}"
            try:
                share = float(raw)
            except ValueError:
                raise ConfigError.for_field(
                    "holdout",
                    text,
                    f"must be SHARE or NAME=SHARE with SHARE in (0, {MAX_HOLDOUT_SHARE}]",
                ) from None
            groups.append(HoldoutGroup(name, share, policy, params))
        return cls(tuple(groups), salt)
