"""Business rules declared in one place: the :class:`Rules` record and its parts.

A :class:`Rules` object is plain data (frozen dataclasses). It is built in Python or read from TOML
(:meth:`Rules.from_toml`), saved in the engine file with the model (:meth:`to_dict`), and applied by
:class:`~bandit_engine.rules.runtime.RuleRunner` before the policy chooses, so the policy's
propensity is the probability over the set that was actually eligible.

TOML layout::

    [[eligibility]]
    name = "members_only"
    when = "course.members_only == true"          # optional: the rule concerns these bundles
    require = "knowledge.membership == 'member'"
    if_missing = "exclude"                         # or "allow"

    [[caps]]                                       # at most 3 shows of a bundle per user per 7 days
    name = "bundle_weekly"
    per = "bundle"                                 # "bundle", "deal" or "course"
    max_shows = 3
    window_days = 7

    [[budgets]]                                    # at most 500 decisions per deal per UTC day
    name = "deal_daily"
    per = "deal"                                   # "bundle" or "deal"
    max_per_day = 500
    count = "decisions"                            # or "orders"
    pacing = "even"                                # or "none"
    ids = ["D0001", "D0002"]                       # optional: only these (default every one)

    [exclusions]
    bought_courses = true
    ordered_deals_days = 30

    [fallback]
    kind = "bundle"                                # "error", "bundle", "policy" or "no_offer"
    bundle_id = "D0001+C0002"
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from .predicates import Predicate, parse_predicate

__all__ = ["Budget", "EligibilityRule", "Exclusions", "Fallback", "FrequencyCap", "Rules"]

Scope = Literal["bundle", "deal", "course"]


def _name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ConfigError.for_field(field_name, value, "must be a name of 1 to 64 characters")
    return value


def _positive_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError.for_field(field_name, value, "must be an integer >= 1")
    return value


def _positive(value: Any, field_name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError.for_field(field_name, value, "must be a finite number > 0")
    return float(value)


@dataclass(frozen=True)
class EligibilityRule:
    """A candidate is eligible only if ``require`` holds (for the bundles ``when`` selects).

    Parameters
    ----------
    name
        Names the rule in errors and explanations.
    require
        A predicate (:mod:`~bandit_engine.rules.predicates`) every allowed candidate satisfies.
    when
        Optional predicate: the rule applies only to candidates for which it holds (``course.
        members_only == true``); others pass.
    if_missing
        What an undecided comparison (a missing value) means: ``"exclude"`` the candidate
        (default: when in doubt, do not show) or ``"allow"`` it. An undecided ``when`` means the
        rule does not apply.
    """

    name: str
    require: str
    when: str | None = None
    if_missing: Literal["exclude", "allow"] = "exclude"

    def __post_init__(self) -> None:
        _name(self.name, "eligibility.name")
        parse_predicate(self.require, f"eligibility[{self.name}].require")
        if self.when is not None:
            parse_predicate(self.when, f"eligibility[{self.name}].when")
        if self.if_missing not in ("exclude", "allow"):
            raise ConfigError.for_field(
                f"eligibility[{self.name}].if_missing",
                self.if_missing,
                "must be 'exclude' or 'allow'",
            )

    @property
    def predicates(self) -> tuple[Predicate, Predicate | None]:
        """``(require, when)`` parsed."""
        req = parse_predicate(self.require, f"eligibility[{self.name}].require")
        when = (
            None
            if self.when is None
            else parse_predicate(self.when, f"eligibility[{self.name}].when")
        )
        return req, when


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max_shows`` decisions showing the same bundle / deal / course to one user within
    the last ``window_days`` (a sliding window; every served decision counts, fallbacks included)."""

    name: str
    per: Scope
    max_shows: int
    window_days: float

    def __post_init__(self) -> None:
        _name(self.name, "caps.name")
        if self.per not in ("bundle", "deal", "course"):
            raise ConfigError.for_field(
                f"caps[{self.name}].per", self.per, "must be 'bundle', 'deal' or 'course'"
            )
        _positive_int(self.max_shows, f"caps[{self.name}].max_shows")
        object.__setattr__(
            self, "window_days", _positive(self.window_days, f"caps[{self.name}].window_days")
        )

    @property
    def window(self) -> float:
        """The window in seconds."""
        return self.window_days * 86_400.0


@dataclass(frozen=True)
class Budget:
    """At most ``max_per_day`` decisions (or orders) per bundle or deal per UTC day.

    Pacing ``"even"`` spreads the budget over the day: by the time a share ``f`` of the UTC day has
    passed, at most ``max(1, ceil(max_per_day * f))`` units may have been used, so a morning rush
    cannot spend the evening's share. ``"none"`` lets the whole budget go first come, first served.
    A decisions budget is exact (checked and counted in the decision's transaction); an orders
    budget stops showing an item once its orders of the day reach the budget, but orders of
    decisions already shown may still arrive and pass it.
    """

    name: str
    per: Literal["bundle", "deal"]
    max_per_day: int
    count: Literal["decisions", "orders"] = "decisions"
    pacing: Literal["none", "even"] = "none"
    ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _name(self.name, "budgets.name")
        where = f"budgets[{self.name}]"
        if self.per not in ("bundle", "deal"):
            raise ConfigError.for_field(f"{where}.per", self.per, "must be 'bundle' or 'deal'")
        _positive_int(self.max_per_day, f"{where}.max_per_day")
        if self.count not in ("decisions", "orders"):
            raise ConfigError.for_field(
                f"{where}.count", self.count, "must be 'decisions' or 'orders'"
            )
        if self.pacing not in ("none", "even"):
            raise ConfigError.for_field(f"{where}.pacing", self.pacing, "must be 'none' or 'even'")
        ids = self.ids
        if isinstance(ids, str) or not all(isinstance(i, str) and i for i in ids):
            raise ConfigError.for_field(f"{where}.ids", ids, "must be a list of ids")
        object.__setattr__(self, "ids", tuple(ids))

    def allowed(self, now: float) -> int:
        """Units that may have been used by ``now`` in its UTC day (see pacing)."""
        if self.pacing == "none":
            return self.max_per_day
        f = (now % 86_400.0) / 86_400.0
        return max(1, min(self.max_per_day, math.ceil(self.max_per_day * f)))


@dataclass(frozen=True)
class Exclusions:
    """Candidates removed from the user's own history (logged decisions with an order event):
    courses already bought, deals ordered within ``ordered_deals_days`` (``None``: off)."""

    bought_courses: bool = False
    ordered_deals_days: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bought_courses, bool):
            raise ConfigError.for_field(
                "exclusions.bought_courses", self.bought_courses, "must be true or false"
            )
        if self.ordered_deals_days is not None:
            object.__setattr__(
                self,
                "ordered_deals_days",
                _positive(self.ordered_deals_days, "exclusions.ordered_deals_days"),
            )

    @property
    def active(self) -> bool:
        return self.bought_courses or self.ordered_deals_days is not None


@dataclass(frozen=True)
class Fallback:
    """What a decision does when nothing is eligible (after the catalog's and these rules).

    ``"error"``: a :class:`~bandit_engine.errors.ValidationError` (the behaviour without rules);
    ``"bundle"``: serve ``bundle_id`` (propensity 1; exempt from eligibility rules, caps and
    exclusions, not from budgets); ``"policy"``: the control ``policy`` (a
    :func:`~bandit_engine.policies.make_policy` spec that does not learn, e.g. ``"uniform"``)
    chooses among every bundle offered now in any city that passes the rules; ``"no_offer"``: a
    :class:`~bandit_engine.errors.NoOfferError` carrying the reason. A fallback that finds nothing
    itself ends in a no-offer.
    """

    kind: Literal["error", "bundle", "policy", "no_offer"] = "error"
    bundle_id: str | None = None
    policy: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("error", "bundle", "policy", "no_offer"):
            raise ConfigError.for_field(
                "fallback.kind", self.kind, "must be 'error', 'bundle', 'policy' or 'no_offer'"
            )
        if self.kind == "bundle" and not (isinstance(self.bundle_id, str) and self.bundle_id):
            raise ConfigError.for_field(
                "fallback.bundle_id", self.bundle_id, "must name a bundle when kind = 'bundle'"
            )
        if self.kind == "policy" and not (isinstance(self.policy, str) and self.policy):
            raise ConfigError.for_field(
                "fallback.policy", self.policy, "must name a policy when kind = 'policy'"
            )


@dataclass(frozen=True)
class Rules:
    """Eligibility predicates, frequency caps, budgets, exclusions and the fallback, together.

    Names must be unique within each list (they key the stored counters)."""

    eligibility: tuple[EligibilityRule, ...] = ()
    caps: tuple[FrequencyCap, ...] = ()
    budgets: tuple[Budget, ...] = ()
    exclusions: Exclusions = field(default_factory=Exclusions)
    fallback: Fallback = field(default_factory=Fallback)

    def __post_init__(self) -> None:
        for attr, kind in (
            ("eligibility", EligibilityRule),
            ("caps", FrequencyCap),
            ("budgets", Budget),
        ):
            items = getattr(self, attr)
            if isinstance(items, Mapping | str) or not isinstance(items, Sequence):
                raise ConfigError.for_field(attr, items, "must be a list")
            items = tuple(items)
            for item in items:
                if not isinstance(item, kind):
                    raise ConfigError.for_field(attr, item, f"must hold {kind.__name__} records")
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ConfigError.for_field(f"{attr}.name", dupes[0], "must be unique")
            object.__setattr__(self, attr, items)
        if not isinstance(self.exclusions, Exclusions):
            raise ConfigError.for_field("exclusions", self.exclusions, "must be an Exclusions")
        if not isinstance(self.fallback, Fallback):
            raise ConfigError.for_field("fallback", self.fallback, "must be a Fallback")

    @property
    def uses_state(self) -> bool:
        """Whether the rules need per-user or per-day counters (caps, budgets, exclusions)."""
        return bool(self.caps or self.budgets or self.exclusions.active)

    # -- plain data ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "eligibility": [
                {"name": r.name, "require": r.require, "when": r.when, "if_missing": r.if_missing}
                for r in self.eligibility
            ],
            "caps": [
                {
                    "name": c.name,
                    "per": c.per,
                    "max_shows": c.max_shows,
                    "window_days": c.window_days,
                }
                for c in self.caps
            ],
            "budgets": [
                {
                    "name": b.name,
                    "per": b.per,
                    "max_per_day": b.max_per_day,
                    "count": b.count,
                    "pacing": b.pacing,
                    "ids": list(b.ids),
                }
                for b in self.budgets
            ],
            "exclusions": {
                "bought_courses": self.exclusions.bought_courses,
                "ordered_deals_days": self.exclusions.ordered_deals_days,
            },
            "fallback": {
                "kind": self.fallback.kind,
                "bundle_id": self.fallback.bundle_id,
                "policy": self.fallback.policy,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rules:
        """Rules from plain data (:meth:`to_dict`, or a parsed TOML file); unknown keys are an
        error naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError.for_field("rules", data, "must be a table")
        known = {"eligibility", "caps", "budgets", "exclusions", "fallback"}
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError.for_field(
                "rules", extra, f"has unknown keys (known: {sorted(known)})"
            )

        def items(key: str, kind: Any, allowed: set[str]) -> tuple[Any, ...]:
            raw = data.get(key, [])
            if not isinstance(raw, list):
                raise ConfigError.for_field(key, raw, "must be a list of tables")
            out = []
            for i, item in enumerate(raw):
                if not isinstance(item, Mapping):
                    raise ConfigError.for_field(f"{key}[{i}]", item, "must be a table")
                bad = sorted(set(item) - allowed)
                if bad:
                    raise ConfigError.for_field(
                        f"{key}[{i}]", bad, f"has unknown keys (known: {sorted(allowed)})"
                    )
                try:
                    out.append(kind(**item))
                except TypeError as exc:
                    raise ConfigError.for_field(
                        f"{key}[{i}]", dict(item), f"is incomplete ({exc})"
                    ) from None
            return tuple(out)

        def table(key: str, kind: Any, allowed: set[str]) -> Any:
            raw = data.get(key, {})
            if not isinstance(raw, Mapping):
                raise ConfigError.for_field(key, raw, "must be a table")
            bad = sorted(set(raw) - allowed)
            if bad:
                raise ConfigError.for_field(
                    key, bad, f"has unknown keys (known: {sorted(allowed)})"
                )
            return kind(**raw)

        budgets = items("budgets", Budget, {"name", "per", "max_per_day", "count", "pacing", "ids"})
        return cls(
            eligibility=items(
                "eligibility", EligibilityRule, {"name", "require", "when", "if_missing"}
            ),
            caps=items("caps", FrequencyCap, {"name", "per", "max_shows", "window_days"}),
            budgets=budgets,
            exclusions=table("exclusions", Exclusions, {"bought_courses", "ordered_deals_days"}),
            fallback=table("fallback", Fallback, {"kind", "bundle_id", "policy"}),
        )

    @classmethod
    def from_toml(cls, source: str | Path) -> Rules:
        """Rules from a TOML file (a :class:`~pathlib.Path`, or a ``str`` path ending in
        ``.toml``) or from TOML text (any other ``str``)."""
        if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".toml")):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError.for_field(
                    "rules", str(path), f"must be a readable file ({exc.strerror})"
                ) from None
        else:
            text = source
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError.for_field(
                "rules", str(source)[:80], f"must be valid TOML ({exc})"
            ) from None
        return cls.from_dict(data)
