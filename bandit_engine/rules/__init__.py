"""Business rules: eligibility predicates, frequency caps, budgets, exclusions and a fallback,
declared in one :class:`Rules` object (Python or TOML), saved with the model and applied before the
policy chooses (:mod:`~bandit_engine.rules.runtime`)."""

from .predicates import Predicate, parse_predicate
from .runtime import RuleRunner, known_columns, policy_from_spec
from .spec import Budget, EligibilityRule, Exclusions, Fallback, FrequencyCap, Rules
from .state import History, MemoryRuleState, RuleState

__all__ = [
    "Budget",
    "EligibilityRule",
    "Exclusions",
    "Fallback",
    "FrequencyCap",
    "History",
    "MemoryRuleState",
    "Predicate",
    "RuleRunner",
    "RuleState",
    "Rules",
    "known_columns",
    "parse_predicate",
    "policy_from_spec",
]
