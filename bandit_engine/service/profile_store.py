"""What a server's profile store holds, told when it starts.

The server reads a user's profile from the event log's profile table at each decision
(:class:`~bandit_engine.service.LogProfiles`); a saved engine carries no profiles (raw ids never
reach its file). :func:`announce_profiles` counts the stored records per platform at start and
says so in the log, and warns when nothing is stored (every user would get a cold-start decision)
or when records are stored for a platform the served engine does not declare.
"""

from __future__ import annotations

import logging

from ..features import FeatureMap
from ..profiles import CONSENT
from ..store import EventStore

__all__ = ["announce_profiles"]


def announce_profiles(
    log: EventStore, features: FeatureMap, logger: logging.Logger
) -> dict[str, int]:
    """Log the number of stored profiles per platform (and the warnings above); returns the
    counts."""
    counts = log.profile_counts()
    declared = features.platform_names
    shown = ", ".join(f"{p}={counts.get(p, 0):,}" for p in declared)
    logger.info("profiles in the store (users per platform): %s", shown)
    if not any(counts.get(p, 0) for p in declared):
        logger.warning(
            "the profile store holds no profiles for %s: every user gets a cold-start decision "
            "until profiles arrive (bandit profiles import --db ... FILE --platform P --model "
            "ENGINE, POST /v1/admin/profiles, or inline in each request)",
            ", ".join(declared),
        )
    foreign = sorted(set(counts) - set(declared) - {CONSENT})
    if foreign:
        logger.warning(
            "the profile store holds records of platform(s) %s, which the served engine does not "
            "declare (%s): decisions for those users will be refused until they are removed",
            foreign,
            ", ".join(declared),
        )
    return counts
