"""bandit-engine: contextual bandits for cross-domain marketing.

Fuse two platforms' user profiles into one context vector, choose a deal + course bundle with a
recorded propensity, learn from clicks and orders, evaluate offline and serve over HTTP.

The heavy optional parts (the Vowpal Wabbit backend, the HTTP server, the simulator's plots) are
imported only when used.
"""

from __future__ import annotations

from ._version import __version__
from .catalog import CandidateSet, Catalog, EligibilityRules
from .engine import Engine
from .errors import (
    BanditError,
    ConfigError,
    ConflictError,
    DataError,
    ModelFileError,
    NotFoundError,
    ValidationError,
)
from .features import (
    Behaviour,
    Boolean,
    Categorical,
    FeatureMap,
    Numeric,
    ProfileSchema,
    Recency,
    Tags,
)
from .policies import (
    EpsilonGreedy,
    FixedRule,
    HybridLinUCB,
    LinearTS,
    LinUCB,
    Policy,
    Popularity,
    UniformRandom,
    make_policy,
)
from .records import Choice, Decision, Estimate, LearnedReward, OutcomeEvent
from .rewards import RewardSpec, reward_to_cost

__all__ = [
    "BanditError",
    "Behaviour",
    "Boolean",
    "CandidateSet",
    "Catalog",
    "Categorical",
    "Choice",
    "ConfigError",
    "ConflictError",
    "DataError",
    "Decision",
    "EligibilityRules",
    "Engine",
    "EpsilonGreedy",
    "Estimate",
    "FeatureMap",
    "FixedRule",
    "HybridLinUCB",
    "LearnedReward",
    "LinUCB",
    "LinearTS",
    "ModelFileError",
    "NotFoundError",
    "Numeric",
    "OutcomeEvent",
    "Policy",
    "Popularity",
    "ProfileSchema",
    "Recency",
    "RewardSpec",
    "Tags",
    "UniformRandom",
    "ValidationError",
    "__version__",
    "make_policy",
    "reward_to_cost",
]
