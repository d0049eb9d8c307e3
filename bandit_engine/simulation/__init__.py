"""Simulation: a synthetic two-platform world to drive the engine and score it against the truth.

:class:`World` generates users (profiles on the knowledge platform, the group-buying platform, both
or neither), a catalog of deal x course bundles and a documented response model
(:mod:`bandit_engine.simulation.world`).
"""

from __future__ import annotations

from .population import AGE_BANDS, CITIES, CUISINES, FORMATS, MEMBERSHIPS, SEGMENTS, TOPICS
from .world import CatalogAddition, World
from .world_config import DriftConfig, RewardWeights, WorldConfig

__all__ = [
    "AGE_BANDS",
    "CITIES",
    "CUISINES",
    "FORMATS",
    "MEMBERSHIPS",
    "SEGMENTS",
    "TOPICS",
    "CatalogAddition",
    "DriftConfig",
    "RewardWeights",
    "World",
    "WorldConfig",
]
