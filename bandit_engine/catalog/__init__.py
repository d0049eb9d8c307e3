"""The catalog: deals, courses, the bundles made of them, their feature vectors and eligibility.

A bundle is a (deal, course) pair. Bundles are either listed explicitly or generated from all pairs of
active deals and courses (new deals and courses then pair with everything active). Every bundle has a
feature vector ``z = [1, deal block, course block]`` built from its deal's and course's attributes with
the same field encoders as user profiles (:mod:`bandit_engine.features`), fitted on the catalog given at
construction. A bundle never shown before therefore has a meaningful vector, and policies that share
parameters across bundles (hybrid LinUCB, shared linear Thompson sampling, Vowpal Wabbit) score it from
what similar bundles taught (item cold start).

Eligibility for one decision, in order:

1. the bundle, its deal and its course are not retired;
2. the deal is valid now: ``valid_from <= now < valid_to`` (a missing bound is open);
3. the deal is in the user's city (``EligibilityRules.user_city`` names the profile field; a deal with no
   city is offered everywhere; a user whose city is unknown sees every city unless
   ``unknown_city="none"``);
4. if the caller passes ``candidates`` (an availability mask), only those of them that pass 1-3, in the
   caller's order.

Candidate sets are cached per city and reused until the catalog changes or the clock crosses a validity
boundary, so the serving path usually does no work here. Retiring keeps a bundle's id and features, so
decisions still pending on it learn normally and policies keep what it taught.

Modules, each importing only those listed before it:

- :mod:`.tables`: the deals and courses tables (validation, JSON records, encoded rows, active
  flags, add / update / retire), and the default deal and course features;
- :mod:`.bundles`: the bundle index (bundle id -> deal row, course row, ``z``, retired flag) and
  :class:`CandidateSet`; the only module that knows how bundles are stored;
- :mod:`.eligibility`: :class:`EligibilityRules`, the per-deal rules (city, validity window,
  unknown city), the availability mask and the per-city cache;
- :mod:`.grid`: the candidate set of a pair-all catalog as eligible deals x active courses
  (:class:`GridCandidates`), cached per city, for grid policies and unlisted catalogs;
- :mod:`.catalog`: :class:`Catalog`, which ties them together and saves / loads them.
"""

from __future__ import annotations

from .bundles import CandidateSet
from .catalog import Catalog
from .eligibility import EligibilityRules
from .grid import GridCandidates
from .tables import DEFAULT_COURSE_FEATURES, DEFAULT_DEAL_FEATURES

__all__ = [
    "DEFAULT_COURSE_FEATURES",
    "DEFAULT_DEAL_FEATURES",
    "CandidateSet",
    "Catalog",
    "EligibilityRules",
    "GridCandidates",
]
