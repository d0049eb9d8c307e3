"""Eligibility: which bundles a user may be shown now, and the per-city cache of the answer.

The rules are evaluated per deal and per course (the city rule and the validity window concern
deals only; retiring concerns deals, courses and bundles), then handed to the bundle index, which
alone knows which bundles pair which deals and courses (:meth:`BundleIndex.select`). In order:

1. the bundle, its deal and its course are not retired;
2. the deal is valid now: ``valid_from <= now < valid_to`` (a missing bound is open);
3. the deal is in the user's city (``EligibilityRules.user_city`` names the profile field; a deal
   with no city is offered everywhere; a user whose city is unknown sees every city unless
   ``unknown_city="none"``);
4. if the caller passes ``candidates`` (an availability mask), only those of them that pass 1-3,
   in the caller's order (:func:`apply_availability`).

:class:`Eligibility` caches the candidate set of each city with the validity interval it holds
for: ``[latest deal bound <= now, earliest deal bound > now)``. It is reused until the catalog
changes (its version) or the clock leaves that interval, so the serving path usually does no work
here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, NotFoundError, ValidationError
from .bundles import BundleIndex, CandidateSet
from .tables import BoolArray, DealTable

__all__ = [
    "ANY_CITY",
    "AnyCity",
    "Eligibility",
    "EligibilityRules",
    "apply_availability",
    "deal_mask",
]


class AnyCity:
    """Cache key meaning "do not apply the city rule" (distinct from every real city)."""


ANY_CITY = AnyCity()


@dataclass(frozen=True)
class EligibilityRules:
    """Which bundles a user may be shown.

    Parameters
    ----------
    user_city
        ``"<platform>.<field>"`` of the user's city in a profile, or ``None`` to disable the city rule.
    deal_city
        Column of the deals table holding the deal's city.
    unknown_city
        ``"all"``: a user with no known city may see deals of every city; ``"none"``: only deals without
        a city.
    require_valid
        Apply the ``valid_from`` / ``valid_to`` window of deals.
    """

    user_city: str | None = "groupbuy.city"
    deal_city: str = "city"
    unknown_city: Literal["all", "none"] = "all"
    require_valid: bool = True

    def __post_init__(self) -> None:
        if self.user_city is not None and self.user_city.count(".") != 1:
            raise ConfigError.for_field(
                "rules.user_city", self.user_city, "must look like '<platform>.<field>' or be None"
            )
        if self.unknown_city not in ("all", "none"):
            raise ConfigError.for_field(
                "rules.unknown_city", self.unknown_city, "must be 'all' or 'none'"
            )

    def city_of(self, profile: Mapping[str, Mapping[str, Any] | None] | None) -> str | None:
        """The user's city from a profile dict, or ``None`` if unknown."""
        if self.user_city is None or not profile:
            return None
        platform, field = self.user_city.split(".")
        part = profile.get(platform)
        if not part:
            return None
        value = part.get(field)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return str(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_city": self.user_city,
            "deal_city": self.deal_city,
            "unknown_city": self.unknown_city,
            "require_valid": self.require_valid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EligibilityRules:
        return cls(**dict(data))


def deal_mask(
    rules: EligibilityRules, deals: DealTable, city: str | AnyCity | None, now: float
) -> tuple[BoolArray, float, float]:
    """Deals eligible in ``city`` (``None``: unknown, :data:`ANY_CITY`: no city rule) at ``now``.

    Returns the mask (one flag per deal row: active, valid now, in the city) and the interval
    ``[lo, hi)`` of times around ``now`` in which the validity part of the answer does not change.
    """
    mask = deals.active.copy()
    lo, hi = -math.inf, math.inf
    if rules.require_valid and mask.size:
        vf, vt = deals.valid_from, deals.valid_to
        with np.errstate(invalid="ignore"):
            mask &= ~(vf > now)
            mask &= ~(vt <= now)
        bounds = np.concatenate([vf[~np.isnan(vf)], vt[~np.isnan(vt)]])
        if bounds.size:
            past = bounds[bounds <= now]
            future = bounds[bounds > now]
            lo = float(past.max()) if past.size else -math.inf
            hi = float(future.min()) if future.size else math.inf
    if rules.user_city is not None and mask.size and not isinstance(city, AnyCity):
        no_city = deals.city == ""
        if city is None:
            if rules.unknown_city == "none":
                mask &= no_city
        else:
            mask &= no_city | (deals.city == city)
    return mask, lo, hi


def apply_availability(
    base: CandidateSet, bundle_ids: Sequence[str], index: BundleIndex
) -> CandidateSet:
    """The availability mask: the ``bundle_ids`` that are in ``base``, in the caller's order.

    Unknown ids raise :class:`~bandit_engine.errors.NotFoundError`, known but ineligible ones are
    dropped, and an empty result raises :class:`~bandit_engine.errors.ValidationError`.
    """
    allowed = set(base.rows.tolist())
    row_of = index.row_of.get
    rows = []
    for bundle_id in bundle_ids:
        row = row_of(bundle_id)
        if row is None:
            raise NotFoundError.for_field("candidates", bundle_id, "is not a known bundle")
        if row in allowed:
            rows.append(row)
    if not rows:
        raise ValidationError.for_field(
            "candidates", list(bundle_ids)[:10], "contains no bundle eligible for this user now"
        )
    return index.candidate_set(np.asarray(rows, dtype=np.intp))


class Eligibility:
    """The rules applied to one catalog's deals, courses and bundle index, cached per city.

    The cache holds, per city key, the catalog version it was computed at, its validity interval
    and the :class:`CandidateSet`; the owner calls :meth:`clear` whenever the catalog changes.
    """

    #: Entries kept before the cache is emptied (one per city seen; bounds memory on open input).
    max_entries = 4096

    def __init__(self, rules: EligibilityRules, index: BundleIndex) -> None:
        self.rules = rules
        self.index = index
        self._cache: dict[str | AnyCity | None, tuple[int, float, float, CandidateSet]] = {}

    def clear(self) -> None:
        """Forget every cached candidate set (the catalog changed)."""
        self._cache.clear()

    def eligible(self, city: str | AnyCity | None, now: float, version: int) -> CandidateSet:
        """Bundles eligible in ``city`` at ``now`` (rules 1-3), read-only features."""
        cached = self._cache.get(city)
        if cached is not None and cached[0] == version and cached[1] <= now < cached[2]:
            return cached[3]
        index = self.index
        deals, lo, hi = deal_mask(self.rules, index.deals, city, now)
        cs = index.candidate_set(index.select(deals, index.courses.active))
        cs.features.setflags(write=False)
        if len(self._cache) > self.max_entries:
            self._cache.clear()
        self._cache[city] = (version, lo, hi, cs)
        return cs
